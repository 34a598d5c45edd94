#include "frugal/status.h"

namespace frugal {

const char* status_code_name(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid argument";
    case StatusCode::kInvalidModel: return "invalid model";
    case StatusCode::kInvalidData: return "invalid data";
    case StatusCode::kNotFound: return "not found";
    case StatusCode::kIoError: return "i/o error";
    case StatusCode::kQualityGate: return "quality gate failed";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kOutOfMemory: return "out of memory";
    case StatusCode::kInternal: return "internal error";
  }
  return "unknown";
}

int exit_code_for(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 0;
    case StatusCode::kInvalidArgument: return 1;
    case StatusCode::kInvalidModel:
    case StatusCode::kInvalidData:
    case StatusCode::kNotFound:
    case StatusCode::kIoError: return 2;
    case StatusCode::kQualityGate: return 3;
    case StatusCode::kUnsupported: return 4;
    case StatusCode::kOutOfMemory:
    case StatusCode::kInternal: return 5;
  }
  return 5;
}

Status Status::with_context(const std::string& context) const {
  if (ok()) return *this;
  return Status(code_, context + ": " + message_);
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return std::string(status_code_name(code_)) + ": " + message_;
}

}  // namespace frugal
