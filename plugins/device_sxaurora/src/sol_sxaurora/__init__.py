"""sol's NEC SX-Aurora Vector Engine plugin: generated VE C, ncc/clang-VE, AVEO offload or host emulation."""
