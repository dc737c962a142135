import Dispatch

/// Runs a blocking librdkafka call (flush, sync commit, admin wait, transaction step) on a
/// Dispatch thread so it never occupies a thread of Swift's cooperative pool.
func blockingCall<T: Sendable, E: Error>(_ body: @escaping @Sendable () throws(E) -> T) async throws(E) -> T {
    let result: Result<T, E> = await withCheckedContinuation { continuation in
        DispatchQueue.global().async {
            do throws(E) {
                continuation.resume(returning: .success(try body()))
            } catch {
                continuation.resume(returning: .failure(error))
            }
        }
    }
    return try result.get()
}
