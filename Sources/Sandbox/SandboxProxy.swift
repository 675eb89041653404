import AgentAPI
import CSupport
import Logging
import Mux
import Sockets
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// Other cocoon processes on the host (`cocoon exec`) reach a sandbox's agent through the process
/// that owns the sandbox: it listens on `control.sock` in the run directory (root only, 0600 in a
/// 0700 directory) and splices every mux channel a client opens onto a channel of the same name on
/// the agent's mux. The client speaks the agent API as if it held the VM's channel itself.
extension Sandbox {
    public static func controlSocketPath(runDirectory: String) -> String { runDirectory + "/control.sock" }

    /// `path`: where to listen, by default `control.sock` in the run directory (the per-sandbox daemon
    /// of the runc command line listens under the caller's `--root`). `local`: channel names served in
    /// this process instead of being spliced to the agent (the daemon's own API); each handler owns the
    /// channel it is given.
    public func serveControlSocket(path: String? = nil, local: [String: @Sendable (MuxChannel) -> Void] = [:]) throws(SandboxError) {
        let path = path ?? Self.controlSocketPath(runDirectory: runDirectory)
        let listener: FileDescriptor
        do throws(SystemError) {
            listener = try StreamSocket.listenUnix(path: path)
        } catch {
            throw SandboxError(error.code, "listen on \(path): \(error.message)")
        }
        lock.withLock { controlListener = listener }
        do {
            try startDetachedThread { [self] in acceptControlConnections(listener, local: local) }
        } catch {
            listener.close()
            throw SandboxError(.resourceExhausted, "cannot start the control socket thread: \(error)")
        }
    }

    private func acceptControlConnections(_ listener: FileDescriptor, local: [String: @Sendable (MuxChannel) -> Void]) {
        while !isStopped {
            guard (try? listener.waitReadable(until: .after(seconds: 1))) == true else { continue }
            let raw = cocoon_accept_cloexec(listener.rawValue)
            guard raw >= 0 else { continue }
            let conn = FileDescriptor(adopting: raw)
            do {
                try startDetachedThread { [self] in proxy(conn, local: local) }
            } catch {
                conn.close()
            }
        }
    }

    private func proxy(_ conn: FileDescriptor, local: [String: @Sendable (MuxChannel) -> Void]) {
        defer { conn.close() }
        let client: Mux
        do throws(MuxError) {
            client = try Mux(stream: DescriptorStream(conn), role: .guest, logger: logger)
        } catch {
            return
        }
        while true {
            let downstream: MuxChannel
            do throws(MuxError) {
                downstream = try client.acceptAny(until: nil)
            } catch {
                return
            }
            if let handler = local[downstream.name] {
                do {
                    try startDetachedThread { handler(downstream) }
                } catch {
                    downstream.reset(reason: "proxy out of threads")
                }
                continue
            }
            let upstream: MuxChannel
            do throws(MuxError) {
                upstream = try agent.mux.open(downstream.name)
            } catch {
                downstream.reset(reason: "the sandbox's agent channel is gone: \(error.message)")
                continue
            }
            do {
                try startDetachedThread { Self.splice(from: downstream, to: upstream) }
                try startDetachedThread { Self.splice(from: upstream, to: downstream) }
            } catch {
                downstream.reset(reason: "proxy out of threads")
                upstream.reset(reason: "proxy out of threads")
            }
        }
    }

    /// Copies one direction until EOF (passed on as a half close) or a failure (passed on as a reset).
    static func splice(from source: MuxChannel, to sink: MuxChannel) {
        while true {
            let bytes: [UInt8]
            do throws(MuxError) {
                bytes = try source.readBytes(upTo: 64 * 1024, until: nil)
            } catch {
                sink.reset(reason: error.message)
                return
            }
            if bytes.isEmpty {
                sink.closeWrite()
                return
            }
            do throws(MuxError) {
                try sink.writeBytes(bytes)
            } catch {
                source.reset(reason: error.message)
                return
            }
        }
    }

    /// A client of another process's sandbox: the agent API through its control socket.
    public static func connectControl(runDirectory: String, logger: Logger) throws(SandboxError) -> AgentClient {
        try connectControl(socket: controlSocketPath(runDirectory: runDirectory), logger: logger)
    }

    public static func connectControl(socket path: String, logger: Logger) throws(SandboxError) -> AgentClient {
        guard Files.exists(path) else {
            throw SandboxError(.notFound, "no sandbox is serving \(path)")
        }
        do {
            let fd = try StreamSocket.connectUnix(path: path, until: .after(seconds: 5))
            return try AgentClient(stream: DescriptorStream(fd), logger: logger)
        } catch let error as SystemError {
            throw SandboxError(.unavailable, "connect to \(path): \(error.message)")
        } catch let error as AgentAPIError {
            throw SandboxError(error.code, error.message)
        } catch {
            throw SandboxError(.internal, "\(error)")
        }
    }
}
