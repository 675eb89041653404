import CSupport
import StatusCodes
#if canImport(Glibc)
import Glibc
#endif

/// An owned file descriptor, closed exactly once. Not copyable so ownership is explicit.
public final class FileDescriptor: @unchecked Sendable {
    // The raw value is immutable after init; close() is guarded by the lock.
    public let rawValue: Int32
    private var closed = false
    private let lock = NSLockLite()

    public init(adopting raw: Int32) { self.rawValue = raw }

    deinit { if !closed { Glibc.close(rawValue) } }

    /// Gives up ownership: the caller closes the returned descriptor.
    public func detach() -> Int32 {
        lock.withLock { closed = true }
        return rawValue
    }

    public func close() {
        lock.withLock {
            if !closed {
                closed = true
                Glibc.close(rawValue)
            }
        }
    }

    /// shutdown(2) on a socket, unless this descriptor is already closed: its number may since belong
    /// to someone else's socket. Errors (ENOTSOCK on a serial port, ENOTCONN) do not matter to callers.
    public func shutdown(_ how: Int32) {
        lock.withLock {
            if !closed { _ = Glibc.shutdown(rawValue, how) }
        }
    }

    /// A pipe whose ends are close-on-exec (a child gets an end only through its fd map).
    public static func pipe() throws(SystemError) -> (read: FileDescriptor, write: FileDescriptor) {
        var fds: [Int32] = [0, 0]
        try SystemError.check("pipe") { Glibc.pipe(&fds) }
        _ = cocoon_set_cloexec(fds[0])
        _ = cocoon_set_cloexec(fds[1])
        return (FileDescriptor(adopting: fds[0]), FileDescriptor(adopting: fds[1]))
    }

    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws(SystemError) -> FileDescriptor {
        let fd = try SystemError.check("open \(path)") { Glibc.open(path, flags | O_CLOEXEC, mode) }
        return FileDescriptor(adopting: fd)
    }

    /// Waits until the descriptor is readable (or hung up), or the deadline passes.
    /// Returns false on timeout.
    public func waitReadable(until deadline: Deadline) throws(SystemError) -> Bool {
        try Poll.wait(for: [rawValue], events: Int16(POLLIN), until: deadline) != nil
    }

    /// Reads up to `count` bytes, waiting at most until the deadline. Empty means end of file.
    public func read(upTo count: Int, until deadline: Deadline) throws(SystemError) -> [UInt8] {
        guard try waitReadable(until: deadline) else {
            throw SystemError("read", errno: ETIMEDOUT, detail: "no data before the deadline")
        }
        return try readNow(upTo: count)
    }

    /// One read(2), blocking if the descriptor is blocking.
    public func readNow(upTo count: Int) throws(SystemError) -> [UInt8] {
        // Not zero-filled first: on the stdio path every pass over the buffer counts (under TCG most of all).
        var failure: Int32 = 0
        let buffer = [UInt8](unsafeUninitializedCapacity: count) { storage, initialized in
            var n: Int
            repeat {
                n = Glibc.read(rawValue, storage.baseAddress, count)
            } while n < 0 && errno == EINTR
            if n < 0 { failure = errno }
            initialized = max(n, 0)
        }
        if failure != 0 { throw SystemError("read", errno: failure) }
        return buffer
    }

    /// Writes all bytes, waiting for the descriptor to drain until the deadline.
    public func writeAll(_ bytes: [UInt8], until deadline: Deadline) throws(SystemError) {
        var offset = 0
        while offset < bytes.count {
            guard try Poll.wait(for: [rawValue], events: Int16(POLLOUT), until: deadline) != nil else {
                throw SystemError("write", errno: ETIMEDOUT, detail: "peer did not read before the deadline")
            }
            let n = bytes.withUnsafeBytes { Glibc.write(rawValue, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw SystemError("write")
            }
            offset += n
        }
    }

    /// Writes `header` then `payload` with writev(2), so the payload is never copied in user space
    /// (a frame header in front of stdio data; under TCG every user-space copy is expensive).
    public func writeAll(_ header: [UInt8], _ payload: ArraySlice<UInt8>, until deadline: Deadline) throws(SystemError) {
        let total = header.count + payload.count
        var done = 0
        while done < total {
            guard try Poll.wait(for: [rawValue], events: Int16(POLLOUT), until: deadline) != nil else {
                throw SystemError("write", errno: ETIMEDOUT, detail: "peer did not read before the deadline")
            }
            let n: Int = header.withUnsafeBytes { h in
                payload.withUnsafeBytes { p in
                    var vectors: [iovec] = []
                    if done < header.count {
                        vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: h.baseAddress! + done), iov_len: header.count - done))
                        if !p.isEmpty { vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: p.baseAddress!), iov_len: p.count)) }
                    } else {
                        let skip = done - header.count
                        vectors.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: p.baseAddress! + skip), iov_len: p.count - skip))
                    }
                    return Glibc.writev(rawValue, vectors, Int32(vectors.count))
                }
            }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw SystemError("write")
            }
            done += n
        }
    }

    public func setNonBlocking(_ on: Bool = true) throws(SystemError) {
        let flags = try SystemError.check("fcntl F_GETFL") { cocoon_fcntl_getfl(rawValue) }
        let new = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        try SystemError.check("fcntl F_SETFL") { cocoon_fcntl_setfl(rawValue, new) }
    }
}

public enum Poll {
    /// Waits for `events` on any of the descriptors; returns the index of the first ready one, or nil
    /// on timeout. POLLHUP and POLLERR count as ready so callers see EOF or the error on read.
    public static func wait(for fds: [Int32], events: Int16, until deadline: Deadline) throws(SystemError) -> Int? {
        var pfds = fds.map { pollfd(fd: $0, events: events, revents: 0) }
        while true {
            let timeout = deadline.remainingMilliseconds
            let r = poll(&pfds, nfds_t(pfds.count), timeout)
            if r < 0 {
                if errno == EINTR { continue }
                throw SystemError("poll")
            }
            if r == 0 {
                if deadline.hasPassed { return nil }
                continue
            }
            return pfds.firstIndex { $0.revents != 0 }
        }
    }
}

/// A minimal pthread mutex, usable from modules that must not import Foundation.
public final class NSLockLite: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    public init() { pthread_mutex_init(mutex, nil) }
    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    public func lock() { pthread_mutex_lock(mutex) }
    public func unlock() { pthread_mutex_unlock(mutex) }
}
