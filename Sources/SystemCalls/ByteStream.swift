#if canImport(Glibc)
import Glibc
#endif

/// A connected, ordered, reliable byte stream: a socket, a virtio-serial port, or one channel of the mux.
/// ttrpc and the stdio relays are written against this, so they do not care which one carries them.
public protocol ByteStream: AnyObject, Sendable {
    /// Blocks until some bytes arrive; empty means the peer closed its sending half (EOF).
    func read(upTo count: Int) throws -> [UInt8]
    /// Writes every byte or throws; blocks while the peer is not reading.
    func write(_ bytes: [UInt8]) throws
    /// `header` then `payload`, as one write where the stream can (a frame without copying its payload).
    func write(_ header: [UInt8], _ payload: ArraySlice<UInt8>) throws
    /// Half close: the peer reads EOF; reading goes on.
    func closeWrite()
    /// Closes both directions and wakes a reader blocked in `read`.
    func close()
}

extension ByteStream {
    public func write(_ header: [UInt8], _ payload: ArraySlice<UInt8>) throws {
        try write(header + payload)
    }
}

/// A ByteStream over a file descriptor. Writes wait at most `writeTimeout` for the peer to drain.
public final class DescriptorStream: ByteStream {
    public let descriptor: FileDescriptor
    let writeTimeout: Double
    private let writeLock = NSLockLite()

    public init(_ descriptor: FileDescriptor, writeTimeout: Double = 30) {
        self.descriptor = descriptor
        self.writeTimeout = writeTimeout
    }

    public func read(upTo count: Int) throws -> [UInt8] {
        do {
            return try descriptor.readNow(upTo: count)
        } catch {
            // A reset peer is the same as a closed one to every user of a stream.
            if error.errno == ECONNRESET { return [] }
            throw error
        }
    }

    public func write(_ bytes: [UInt8]) throws {
        try writeLock.withLock { () throws(SystemError) in
            try descriptor.writeAll(bytes, until: .after(seconds: writeTimeout))
        }
    }

    public func write(_ header: [UInt8], _ payload: ArraySlice<UInt8>) throws {
        try writeLock.withLock { () throws(SystemError) in
            try descriptor.writeAll(header, payload, until: .after(seconds: writeTimeout))
        }
    }

    public func closeWrite() {
        descriptor.shutdown(Int32(SHUT_WR))
    }

    /// shutdown(2) wakes a thread blocked in read(2) on a socket, which close(2) does not.
    public func close() {
        descriptor.shutdown(Int32(SHUT_RDWR))
    }
}

/// A pthread condition variable on the monotonic clock, paired with its own mutex.
public final class Condition: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    public init() {
        pthread_mutex_init(mutex, nil)
        var attr = pthread_condattr_t()
        pthread_condattr_init(&attr)
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)
        pthread_cond_init(cond, &attr)
        pthread_condattr_destroy(&attr)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    /// For callers that cannot use a closure (typed throws across nested closures).
    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }

    /// Call with the lock held (inside `withLock`). Returns false when the deadline passed.
    /// Wakes spuriously like any condition variable: callers loop on their predicate.
    public func wait(until deadline: Deadline?) -> Bool {
        guard let deadline else {
            pthread_cond_wait(cond, mutex)
            return true
        }
        if deadline.hasPassed { return false }
        var ts = timespec(tv_sec: Int(deadline.nanoseconds / 1_000_000_000),
                          tv_nsec: Int(deadline.nanoseconds % 1_000_000_000))
        return pthread_cond_timedwait(cond, mutex, &ts) != ETIMEDOUT
    }

    /// Call with the lock held.
    public func broadcast() { pthread_cond_broadcast(cond) }
}
