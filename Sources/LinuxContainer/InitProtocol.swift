#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import CSupport
import OCI
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// What the runtime sends the init stage once the namespaces exist (and id maps are written).
public struct InitConfig: Codable, Sendable {
    public var containerID: String
    public var spec: Spec
    /// The rootfs as the host sees it (absolute).
    public var rootfs: String
    public var noPivot: Bool
    /// The exec FIFO, opened by init before it pivots; `start` opens the other end.
    public var execFifo: String
    /// How many descriptors after stdio the caller asked to pass through (runc's --preserve-fds).
    public var preservedFDs: Int
    /// Whether init was given a new mount namespace (a joined one is set up already).
    public var newMountNamespace: Bool
    public var newUserNamespace: Bool
    /// Unshared by init once it is in its cgroup, so that cgroup becomes the namespace's root.
    public var newCgroupNamespace: Bool
    /// Unshared by init, which writes the spec's offsets before anything enters it; init's own
    /// execve of the container's program moves it in.
    public var newTimeNamespace: Bool = false
    public var bundle: String
    /// With process.terminal: the descriptor (in init) of the console socket that gets the pty master.
    public var consoleSocketFD: Int32?
    /// `exec` into a running container: the namespaces and root are the container's already; only the
    /// process attributes are applied, and there is no start to wait for.
    public var execMode: Bool = false
    /// `exec` into a container with a time namespace of its own: the descriptor (in init) to join it by.
    /// Joined by init, not by the spawner: the kernel refuses a time namespace to a process that shares
    /// its memory (the spawner's vfork child shares the runtime's).
    public var timeNamespaceFD: Int32? = nil
}

/// Messages from init to the runtime.
public enum InitReport: Codable, Sendable {
    /// The mounts are done, pivot_root is not: the runtime runs prestart and createRuntime hooks
    /// now (sent only when the spec has such hooks) and answers `InitCommand.proceed`.
    case runtimeHooks
    /// The rootfs is ready and the program found: init now waits on the exec FIFO.
    case ready
    case failed(LinuxContainerError)
}

/// Messages from the runtime to init after the configuration.
public enum InitCommand: Codable, Sendable {
    /// Init is in the container's cgroup: born there (v2), moved itself in before exec (v1), or moved there by
    /// pid while it made its mounts (v2 without CLONE_INTO_CGROUP).
    case joinedCgroup
    case proceed
    case abort(String)
}

/// A SOCK_SEQPACKET socket: one message per send, so JSON needs no framing.
public struct SyncSocket: Sendable {
    public let fd: FileDescriptor
    public static let maxMessageBytes = 4 << 20

    public init(fd: FileDescriptor) { self.fd = fd }

    public static func pair() throws(SystemError) -> (SyncSocket, SyncSocket) {
        var fds: [Int32] = [0, 0]
        try SystemError.check("socketpair") { socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &fds) }
        _ = cocoon_set_cloexec(fds[0])
        _ = cocoon_set_cloexec(fds[1])
        return (SyncSocket(fd: FileDescriptor(adopting: fds[0])), SyncSocket(fd: FileDescriptor(adopting: fds[1])))
    }

    public func send<T: Encodable>(_ value: T) throws(LinuxContainerError) {
        guard let data = try? JSONEncoder().encode(value) else {
            throw LinuxContainerError(step: "sync", "cannot encode \(T.self)")
        }
        guard data.count <= Self.maxMessageBytes else {
            throw LinuxContainerError(.resourceExhausted, step: "sync", "message of \(data.count) bytes is too large")
        }
        let n = data.withUnsafeBytes { Glibc.send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        if n != data.count { throw LinuxContainerError(.unavailable, step: "sync", "send: \(String(cString: strerror(errno)))") }
    }

    /// Receives one message; nil when the peer closed its end.
    public func receive<T: Decodable>(_ type: T.Type, until deadline: Deadline) throws(LinuxContainerError) -> T? {
        do {
            guard try fd.waitReadable(until: deadline) else {
                throw LinuxContainerError(.deadlineExceeded, step: "sync", "no message before the deadline")
            }
        } catch let error as SystemError {
            throw LinuxContainerError(step: "sync", error.message)
        } catch let error as LinuxContainerError { throw error } catch { throw LinuxContainerError(step: "sync", "\(error)") }
        // The message's real size first (SOCK_SEQPACKET with MSG_TRUNC), so a buffer of exactly that size
        // is allocated rather than the 4 MiB limit on every start.
        let size = recv(fd.rawValue, nil, 0, Int32(MSG_PEEK | MSG_TRUNC))
        if size == 0 { return nil }
        guard size > 0 else { throw LinuxContainerError(.unavailable, step: "sync", "recv: \(String(cString: strerror(errno)))") }
        guard size <= Self.maxMessageBytes else {
            throw LinuxContainerError(.resourceExhausted, step: "sync", "message of \(size) bytes is too large")
        }
        var buffer = [UInt8](repeating: 0, count: size)
        let n = buffer.withUnsafeMutableBytes { recv(fd.rawValue, $0.baseAddress, $0.count, 0) }
        if n == 0 { return nil }
        guard n > 0 else { throw LinuxContainerError(.unavailable, step: "sync", "recv: \(String(cString: strerror(errno)))") }
        do {
            return try JSONDecoder().decode(T.self, from: Data(buffer[0..<n]))
        } catch {
            throw LinuxContainerError(.invalidArgument, step: "sync", "malformed \(T.self) message")
        }
    }
}
