# System packages frugal builds against (Debian 12); see third_party/README.md for versions and reasons.
find_package(Protobuf REQUIRED)
find_package(ONNX REQUIRED CONFIG)            # imported targets onnx, onnx_proto
find_package(Eigen3 3.3 REQUIRED NO_MODULE)   # Eigen3::Eigen
find_package(CLI11 REQUIRED CONFIG)           # CLI11::CLI11
find_package(nlohmann_json 3.9 REQUIRED CONFIG)
find_package(OpenMP REQUIRED COMPONENTS CXX)
find_package(ZLIB REQUIRED)                   # ZLIB::ZLIB: deflated .npz entries
find_package(Threads REQUIRED)
if(FRUGAL_TESTS)
  find_package(Catch2 2 REQUIRED CONFIG)      # Catch2::Catch2
  # Tests only: an independent zip writer for the .npz reader's tests (frugal itself reads zip with
  # lib/exec/zip_reader.cpp).
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(LIBZIP REQUIRED IMPORTED_TARGET libzip)
endif()
