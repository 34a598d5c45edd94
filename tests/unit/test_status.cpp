#include <catch2/catch.hpp>

#include "frugal/status.h"

using namespace frugal;

TEST_CASE("exit codes follow the documented table") {
  CHECK(exit_code_for(StatusCode::kOk) == 0);
  CHECK(exit_code_for(StatusCode::kInvalidArgument) == 1);
  CHECK(exit_code_for(StatusCode::kInvalidModel) == 2);
  CHECK(exit_code_for(StatusCode::kInvalidData) == 2);
  CHECK(exit_code_for(StatusCode::kNotFound) == 2);
  CHECK(exit_code_for(StatusCode::kQualityGate) == 3);
  CHECK(exit_code_for(StatusCode::kUnsupported) == 4);
  CHECK(exit_code_for(StatusCode::kInternal) == 5);
}

static StatusOr<int> half(int x) {
  if (x % 2) return InvalidArgument("odd");
  return x / 2;
}

static Status quarter(int x, int* out) {
  FRUGAL_ASSIGN_OR_RETURN(int h, half(x));
  FRUGAL_ASSIGN_OR_RETURN(*out, half(h));
  return OkStatus();
}

TEST_CASE("status macros propagate the first error") {
  int v = 0;
  CHECK(quarter(8, &v).ok());
  CHECK(v == 2);
  Status s = quarter(6, &v);
  CHECK(s.code() == StatusCode::kInvalidArgument);
  CHECK(s.with_context("ctx").message() == "ctx: odd");
}
