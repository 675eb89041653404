import CSupport
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// An rtnetlink socket. It stays bound to the network namespace it was opened in, so a socket
/// opened by `NetworkNamespace.run` keeps working on that namespace from any thread.
/// Requests are serialized; every receive has a deadline.
public final class RouteSocket: @unchecked Sendable {
    let fd: FileDescriptor
    private let lock = NSLockLite()
    private var sequence: UInt32 = 0  // guarded by lock
    /// How long one request may take; the kernel answers in microseconds unless something is wrong.
    public var timeoutSeconds: Double = 5

    /// A socket in the calling thread's network namespace.
    public static func open() throws(NetlinkError) -> RouteSocket {
        let raw = socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0 /* NETLINK_ROUTE */)
        guard raw >= 0 else { throw NetlinkError(.internal, "netlink socket: \(String(cString: strerror(errno)))") }
        let fd = FileDescriptor(adopting: raw)
        var on: Int32 = 1
        // Errors without the request echoed back, with the kernel's explanation when it has one.
        let solNetlink: Int32 = 270, capAck: Int32 = 10, extAck: Int32 = 11
        _ = setsockopt(raw, solNetlink, capAck, &on, socklen_t(MemoryLayout<Int32>.size))
        _ = setsockopt(raw, solNetlink, extAck, &on, socklen_t(MemoryLayout<Int32>.size))
        // No bind: the kernel assigns the port on the first send.
        return RouteSocket(fd: fd)
    }

    private init(fd: FileDescriptor) { self.fd = fd }

    public func close() { fd.close() }

    /// Sends a request that changes something and waits for the kernel's acknowledgement.
    func execute(_ request: NetlinkRequest, what: @autoclosure () -> String) throws(NetlinkError) {
        var r = request
        r.flags |= Netlink.request | Netlink.ack
        _ = try exchange(r, what: what())
    }

    /// Sends a dump request and collects every message of the answer.
    func dump(_ request: NetlinkRequest, what: @autoclosure () -> String) throws(NetlinkError) -> [NetlinkMessage] {
        var r = request
        r.flags |= Netlink.request | Netlink.dump
        return try exchange(r, what: what())
    }

    private func exchange(_ request: NetlinkRequest, what: String) throws(NetlinkError) -> [NetlinkMessage] {
        lock.lock()
        defer { lock.unlock() }
        sequence &+= 1
        let seq = sequence
        let deadline = Deadline.after(seconds: timeoutSeconds)
        let bytes = request.encoded(sequence: seq)
        let sent = bytes.withUnsafeBytes { send(fd.rawValue, $0.baseAddress, $0.count, 0) }
        guard sent == bytes.count else { throw NetlinkError(.internal, "\(what): netlink send: \(String(cString: strerror(errno)))") }
        var collected: [NetlinkMessage] = []
        while true {
            let datagram: [UInt8]
            do throws(SystemError) {
                datagram = try fd.read(upTo: 64 * 1024, until: deadline)
            } catch {
                throw NetlinkError(error.errno == ETIMEDOUT ? .deadlineExceeded : .internal, "\(what): netlink: \(error.message)")
            }
            for message in try NetlinkMessage.parse(datagram) where message.sequence == seq {
                switch message.type {
                case Netlink.done:
                    return collected
                case Netlink.error:
                    try Self.check(message, what: what)
                    return collected  // an acknowledgement
                default:
                    collected.append(message)
                    if message.flags & Netlink.multi == 0 && request.flags & Netlink.dump != Netlink.dump { return collected }
                }
            }
        }
    }

    /// An NLMSG_ERROR: error 0 is an acknowledgement; otherwise the errno and the kernel's message.
    private static func check(_ message: NetlinkMessage, what: String) throws(NetlinkError) {
        let p = message.payload
        guard p.count >= 4 else { throw NetlinkError(.dataLoss, "\(what): truncated netlink error") }
        let error = -p.native(Int32.self, at: p.startIndex)
        guard error != 0 else { return }
        var text = String(cString: strerror(error))
        // After the errno: the request's header (capped) or the whole request, then TLVs.
        if message.flags & Netlink.ackTLVs != 0, p.count >= 20 {
            let echoed = message.flags & Netlink.capped != 0 ? 16 : Int(p.native(UInt32.self, at: p.startIndex + 4))
            let start = p.startIndex + 4 + ((echoed + 3) & ~3)
            if start <= p.endIndex, let kernelSays = Attributes(p[start...]).string(1), !kernelSays.isEmpty {
                text += " (\(kernelSays))"
            }
        }
        throw NetlinkError(NetlinkError.code(forErrno: error), "\(what): \(text)")
    }
}

/// Work inside another network namespace.
public enum NetworkNamespace {
    /// Runs `body` on a new thread that has joined the network namespace at `path` (a bind mount such
    /// as /var/run/netns/NAME, or /proc/PID/ns/net). Sockets and tap devices it opens stay in that
    /// namespace; no other thread of this process changes namespace.
    public static func run<T: Sendable>(in path: String, _ body: @escaping @Sendable () throws(NetlinkError) -> T) throws(NetlinkError) -> T {
        let nsfd: FileDescriptor
        do throws(SystemError) {
            nsfd = try FileDescriptor.open(path, O_RDONLY)
        } catch {
            throw NetlinkError(error.errno == ENOENT ? .notFound : .invalidArgument, "network namespace \(path): \(error.message)")
        }
        defer { nsfd.close() }
        let box = ResultBox<T>()
        let raw = nsfd.rawValue
        do throws(SystemError) {
            try startDetachedThread {
                defer { box.finished() }
                guard cocoon_setns_net(raw) == 0 else {
                    let e = errno
                    box.result = .failure(NetlinkError(e == EINVAL ? .invalidArgument : NetlinkError.code(forErrno: e),
                        "network namespace \(path): setns: \(String(cString: strerror(e)))\(e == EINVAL ? " (not a network namespace)" : "")"))
                    return
                }
                do throws(NetlinkError) {
                    box.result = .success(try body())
                } catch {
                    box.result = .failure(error)
                }
            }
        } catch {
            throw NetlinkError(.resourceExhausted, "network namespace \(path): \(error.message)")
        }
        return try box.wait().get()
    }
}

private final class ResultBox<T: Sendable>: @unchecked Sendable {
    var result: Result<T, NetlinkError>?
    private var done = false
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let cond = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(cond, nil)
    }

    deinit {
        pthread_cond_destroy(cond)
        pthread_mutex_destroy(mutex)
        cond.deallocate()
        mutex.deallocate()
    }

    func finished() {
        pthread_mutex_lock(mutex)
        done = true
        pthread_cond_broadcast(cond)
        pthread_mutex_unlock(mutex)
    }

    /// The body only makes netlink requests, each with its own deadline, so this wait ends.
    func wait() -> Result<T, NetlinkError> {
        pthread_mutex_lock(mutex)
        while !done { pthread_cond_wait(cond, mutex) }
        pthread_mutex_unlock(mutex)
        return result ?? .failure(NetlinkError(.internal, "network namespace thread ended without a result"))
    }
}
