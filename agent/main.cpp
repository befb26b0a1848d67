// Thin on purpose: everything lives in the agent library, which the tests link too.
#include "agent/cli/cli.hpp"

int main(int argc, char* argv[]) { return meter::agent::agent_main(argc, argv); }
