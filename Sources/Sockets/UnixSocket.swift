import CSupport
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// Stream sockets on unix paths and vsock ports. Every blocking call takes a deadline.
public enum StreamSocket {
    /// sun_path holds 108 bytes including the terminator (longer paths go through their directory).
    public static let maxUnixPathLength = 107

    /// Runs `body` with a sockaddr_un for `path`. A path longer than sun_path holds (docker's and
    /// containerd's state roots plus a container id) is reached through its directory: opened with
    /// O_PATH, then named as `/proc/self/fd/<n>/<name>`, which the kernel resolves like the original.
    private static func withUnixAddress<T>(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> T) throws(SystemError) -> T {
        guard !path.isEmpty else { throw SystemError("unix socket", errno: EINVAL, detail: "the path is empty") }
        var address = path
        var directory: Int32 = -1
        defer { if directory >= 0 { close(directory) } }
        if path.utf8.count > maxUnixPathLength {
            let slash = path.lastIndex(of: "/")
            let parent = slash.map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
            let name = slash.map { String(path[path.index(after: $0)...]) } ?? path
            directory = cocoon_open_path(parent)
            guard directory >= 0 else { throw SystemError("unix socket \(path): open its directory \(parent)") }
            address = "/proc/self/fd/\(directory)/\(name)"
        }
        let bytes = Array(address.utf8)
        guard bytes.count <= maxUnixPathLength else {
            throw SystemError("unix socket \(path)", errno: ENAMETOOLONG,
                              detail: "its file name is too long even when reached through its directory (\(address))")
        }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                body($0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
    }

    /// Binds and listens on a unix path, replacing a stale socket file. Mode 0600: only root talks to it.
    public static func listenUnix(path: String, backlog: Int32 = 16) throws(SystemError) -> FileDescriptor {
        let raw = try SystemError.check("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        let fd = FileDescriptor(adopting: raw)
        unlink(path)
        let r = try withUnixAddress(path) { bind(raw, $0, $1) }
        if r != 0 { throw SystemError("bind \(path)") }
        chmod(path, 0o600)
        try SystemError.check("listen \(path)") { listen(raw, backlog) }
        return fd
    }

    /// Connects to a unix path, retrying while the listener is not there yet, until the deadline.
    public static func connectUnix(path: String, until deadline: Deadline) throws(SystemError) -> FileDescriptor {
        while true {
            let raw = try SystemError.check("socket") { socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
            let fd = FileDescriptor(adopting: raw)
            let r = try withUnixAddress(path) { connect(raw, $0, $1) }
            if r == 0 { return fd }
            let e = errno
            fd.close()
            guard e == ENOENT || e == ECONNREFUSED || e == EINTR || e == EAGAIN, !deadline.hasPassed else {
                throw SystemError("connect \(path)", errno: deadline.hasPassed ? ETIMEDOUT : e)
            }
            sleep(seconds: 0.01)
        }
    }

    /// Accepts one connection, or throws ETIMEDOUT at the deadline.
    public static func accept(_ listener: FileDescriptor, until deadline: Deadline) throws(SystemError) -> FileDescriptor {
        guard try listener.waitReadable(until: deadline) else {
            throw SystemError("accept", errno: ETIMEDOUT, detail: "no connection before the deadline")
        }
        let raw = try SystemError.check("accept") { cocoon_accept_cloexec(listener.rawValue) }
        return FileDescriptor(adopting: raw)
    }

    /// Connects to a vsock port, retrying while the guest is not listening yet, until the deadline.
    public static func connectVsock(cid: UInt32, port: UInt32, until deadline: Deadline) throws(SystemError) -> FileDescriptor {
        while true {
            let raw = cocoon_vsock_connect(cid, port)
            if raw >= 0 { return FileDescriptor(adopting: raw) }
            let e = errno
            guard e == ECONNREFUSED || e == ECONNRESET || e == ENODEV || e == ETIMEDOUT || e == EINTR,
                  !deadline.hasPassed else {
                throw SystemError("connect vsock \(cid):\(port)", errno: deadline.hasPassed ? ETIMEDOUT : e)
            }
            sleep(seconds: 0.01)
        }
    }

    /// A connected pair of unix stream sockets (in-process channels, tests).
    public static func pair() throws(SystemError) -> (FileDescriptor, FileDescriptor) {
        var fds: [Int32] = [0, 0]
        try SystemError.check("socketpair") {
            socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds)
        }
        return (FileDescriptor(adopting: fds[0]), FileDescriptor(adopting: fds[1]))
    }

    public static func listenVsock(port: UInt32, backlog: Int32 = 16) throws(SystemError) -> FileDescriptor {
        let raw = cocoon_vsock_listen(port, backlog)
        if raw < 0 { throw SystemError("listen vsock port \(port)") }
        return FileDescriptor(adopting: raw)
    }
}
