// The agent's version: printed by `meter-agent --version`, logged at start and
// carried in the retained status topic (so the source needs no command line).
#pragma once

namespace meter::agent {

inline constexpr const char* kVersion = "0.1.0";

}  // namespace meter::agent
