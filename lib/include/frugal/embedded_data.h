// Data files compiled into the binary (lib/energy/data/*.json), by file name.
#pragma once

#include <map>
#include <string>

namespace frugal {

const std::map<std::string, std::string>& embedded_files();

}  // namespace frugal
