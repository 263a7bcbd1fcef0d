"""sol's x86 device plugin: generated C++/OpenMP loop nests and oneDNN library calls."""
