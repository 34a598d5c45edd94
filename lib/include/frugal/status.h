// Status and StatusOr: how every library function reports failure. No exception crosses the library
// boundary; errors from protobuf, ONNX or CUDA are caught where they happen and turned into a Status
// whose message names the file, node or tensor at fault. Each code maps to one CLI exit code.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>
#include <variant>

namespace frugal {

enum class StatusCode : int {
  kOk = 0,
  kInvalidArgument,  // bad flags or options from the caller              -> exit 1
  kInvalidModel,     // corrupt or inconsistent model file               -> exit 2
  kInvalidData,      // dataset: wrong dtype/shape, unreadable tensor     -> exit 2
  kNotFound,         // missing file, tensor, input                      -> exit 2
  kIoError,          // read/write failure                               -> exit 2
  kQualityGate,      // a fidelity bound was not met                     -> exit 3
  kUnsupported,      // op, dtype or feature frugal cannot handle (yet)  -> exit 4
  kOutOfMemory,      //                                                  -> exit 5
  kInternal,         // a bug                                            -> exit 5
};

const char* status_code_name(StatusCode code);
// The process exit code documented in README.md for a status code.
int exit_code_for(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok_status() { return Status(); }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "message" prefixed with context, e.g. "node 'conv1' (Conv): ..." .
  Status with_context(const std::string& context) const;
  std::string to_string() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status OkStatus() { return Status(); }
inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status InvalidModel(std::string m) { return {StatusCode::kInvalidModel, std::move(m)}; }
inline Status InvalidData(std::string m) { return {StatusCode::kInvalidData, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status QualityGate(std::string m) { return {StatusCode::kQualityGate, std::move(m)}; }
inline Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status OutOfMemory(std::string m) { return {StatusCode::kOutOfMemory, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(const Status& s) : status_(s) { assert(!s.ok() && "StatusOr needs a value or an error"); }
  StatusOr(Status&& s) : status_(std::move(s)) { assert(!status_.ok()); }
  StatusOr(const T& v) : value_(v) {}
  StatusOr(T&& v) : value_(std::move(v)) {}
  template <typename U, typename = std::enable_if_t<std::is_convertible_v<U&&, T> &&
                                                    !std::is_same_v<std::decay_t<U>, Status> &&
                                                    !std::is_same_v<std::decay_t<U>, T>>>
  StatusOr(U&& v) : value_(T(std::forward<U>(v))) {}

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace frugal

#define FRUGAL_CONCAT_INNER(a, b) a##b
#define FRUGAL_CONCAT(a, b) FRUGAL_CONCAT_INNER(a, b)

#define FRUGAL_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::frugal::Status _frugal_st = (expr);            \
    if (!_frugal_st.ok()) return _frugal_st;         \
  } while (0)

#define FRUGAL_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()

#define FRUGAL_ASSIGN_OR_RETURN(lhs, expr) \
  FRUGAL_ASSIGN_OR_RETURN_IMPL(FRUGAL_CONCAT(_frugal_so_, __LINE__), lhs, expr)
