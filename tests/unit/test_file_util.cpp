// sha256 against published FIPS 180-4 test vectors and digests computed by Python's hashlib.
#include <catch2/catch.hpp>

#include <fstream>
#include <string>

#include "frugal/file_util.h"
#include "test_util.h"

using namespace frugal;

namespace {

// Bytes (7 i + 3) mod 256 for i < n: a pattern the expected digests were computed from with
// Python's hashlib (see the test below).
std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 7 + 3) % 256);
  return s;
}

}  // namespace

TEST_CASE("sha256: FIPS 180-4 vectors", "[file_util]") {
  CHECK(sha256_hex("", 0) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_hex("abc", 3) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string two_blocks = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK(sha256_hex(two_blocks.data(), two_blocks.size()) ==
        "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const std::string long_msg =
      "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  CHECK(sha256_hex(long_msg.data(), long_msg.size()) ==
        "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
  const std::string million_a(1000000, 'a');
  CHECK(sha256_hex(million_a.data(), million_a.size()) ==
        "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256: padding edges around one block (hashlib digests)", "[file_util]") {
  // 55 bytes: length fits in the last block; 56..63: padding spills into a second block.
  const std::pair<size_t, const char*> cases[] = {
      {55, "e7313d333c272e639f790978283f9eb392e843d0f29b7016828bb1daa4aac70b"},
      {56, "4324d65f3c103567f5589c710bc08f8523f929a9272e3af36fc968e52abc6c27"},
      {63, "81c80242132f230c3bd41b3e63bbcff16107339549214a99614ff26664625055"},
      {64, "39e3d7b6b5d075d37d053ad89b24b41bef4f3c29760c84447cab3f3be1882241"},
      {65, "aacca6ff74fdbb296d165a45cecfa04e5127bc008770fbbdd48006f2d2fae95e"},
      {119, "9ce7368e4daf32341631b492e80359dc9f594b48453cd0dd5bf0b19279cc177e"},
      {120, "7836b787757e95e58b3ca5aec90b1b004e8deba1e50e9675af9cabf1a13a04b5"},
  };
  for (const auto& [n, hex] : cases) {
    INFO("length " << n);
    const std::string s = pattern(n);
    CHECK(sha256_hex(s.data(), s.size()) == hex);
  }
}

TEST_CASE("sha256_file: a file read in several chunks, not a multiple of 64 bytes (hashlib digest)", "[file_util]") {
  // 2,500,001 bytes: more than two of the reader's 1 MiB chunks, each chunk boundary inside a block.
  testing::TempDir tmp;
  const auto p = tmp.path / "pattern.bin";
  {
    std::ofstream out(p, std::ios::binary);
    const std::string s = pattern(2500001);
    out.write(s.data(), static_cast<std::streamsize>(s.size()));
  }
  auto h = sha256_file(p);
  REQUIRE(h.ok());
  CHECK(*h == "1cc14ab7b192e6950a0c5035b893d7fb95e8b0786d74d52297fdac6f5064d144");
  CHECK_FALSE(sha256_file(tmp.path / "missing.bin").ok());
}
