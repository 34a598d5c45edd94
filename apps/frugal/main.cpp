#include <iostream>
#include "frugal/executor.h"
int main() { std::cout << frugal::cpu_registry().entries().size() << "\n"; return 0; }
