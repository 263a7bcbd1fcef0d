"""sol-device-c: an example device plugin, written against ``sol.plugin_api`` only.

It renders each network as one plain C99 file through sol's C-family generator, compiles it with
the system C compiler and runs it through ctypes (see README.md). The entry point in the ``sol``
group names :mod:`sol_device_c.plugin`."""
