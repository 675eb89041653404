#if canImport(Glibc)
import Glibc
#endif

private final class ThreadBody {
    let run: () -> Void
    init(_ run: @escaping () -> Void) { self.run = run }
}

/// Starts a detached OS thread for work that blocks for its whole life (a reaper, a
/// connection loop), so it never ties up a thread of Swift's cooperative pool.
public func startDetachedThread(_ body: @escaping @Sendable () -> Void) throws(SystemError) {
    let box = Unmanaged.passRetained(ThreadBody(body)).toOpaque()
    var thread = pthread_t()
    let r = pthread_create(&thread, nil, { arg in
        let body = Unmanaged<ThreadBody>.fromOpaque(arg!).takeRetainedValue()
        body.run()
        return nil
    }, box)
    if r != 0 {
        Unmanaged<ThreadBody>.fromOpaque(box).release()
        throw SystemError("pthread_create", errno: r)
    }
    pthread_detach(thread)
}
