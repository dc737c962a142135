import CMimalloc

#if canImport(Glibc)
import Glibc
#endif

/// The memory allocator of the connector's processes: mimalloc (Debian's libmimalloc2.0).
///
/// An executable that uses this module links `libmimalloc.so` ahead of the C library, so the
/// dynamic linker binds `malloc`, `free` and the rest of the process to mimalloc: Swift's
/// runtime, BoringSSL and librdkafka alike. The services allocate many small blocks per event
/// and free some of them on another thread (librdkafka's copy of a webhook's record is made on
/// the request's event loop and freed after the delivery report, on the loop that serves
/// reports), which glibc's arenas serve slowly; with mimalloc an accepted webhook costs about
/// 4 µs less CPU (BENCHMARKS.md, "Ingress: session 10").
public enum MemoryAllocator {
    /// mimalloc's version, e.g. "2.0.9".
    public static var version: String {
        let version = Int(mi_version())  // major and two digits of minor: 209 is 2.0.9
        return "\(version / 100).\(version % 100 / 10).\(version % 10)"
    }

    /// Whether this process's `malloc` is mimalloc's. False only when the C library's
    /// `malloc` was bound first, for example by a library preloaded ahead of mimalloc.
    public static var servesMalloc: Bool {
        guard let block = malloc(64) else { return false }
        defer { free(block) }
        return mi_is_in_heap_region(block)
    }

    /// For a service's startup line.
    public static var description: String {
        servesMalloc ? "mimalloc \(version)" : "the C library's malloc (mimalloc \(version) is linked but not in use)"
    }
}
