#ifndef CMIMALLOC_SHIM_H
#define CMIMALLOC_SHIM_H

/*
 * Debian's libmimalloc-dev. Linking the library is what matters: its shared
 * object defines malloc, free and the rest, and linked ahead of the C library
 * it serves every allocation of the process (MemoryAllocator.swift).
 */
#include <mimalloc.h>

#endif
