import AgentAPI
import Logging
import StatusCodes
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// Answers requests. Transport-free: the same service runs on virtio-serial, vsock or a unix socket.
public struct AgentService: Sendable {
    public enum Mode: Sendable {
        /// PID 1 in a VM: Shutdown powers the guest off.
        case guest
        /// A plain host process (tests, development): Shutdown ends the process.
        case hostProcess
    }

    let mode: Mode
    let logger: Logger

    public init(mode: Mode, logger: Logger) {
        self.mode = mode
        self.logger = logger
    }

    public func health() -> HealthInfo {
        var name = utsname()
        uname(&name)
        let release = withUnsafePointer(to: name.release) {
            String(cString: UnsafeRawPointer($0).assumingMemoryBound(to: CChar.self))
        }
        let uptime = (try? Files.readString("/proc/uptime")).flatMap { Double($0.split(separator: " ").first ?? "") } ?? 0
        return HealthInfo(agentVersion: CocoonVersion.string, kernelRelease: release, uptimeSeconds: uptime,
                          pid: getpid(),
                          agentRSSKiB: Self.kibValue("VmRSS:", in: "/proc/self/status"),
                          memoryTotalKiB: Self.kibValue("MemTotal:", in: "/proc/meminfo"))
    }

    static func kibValue(_ key: String, in path: String) -> Int {
        guard let text = try? Files.readString(path) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix(key) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count >= 2, let v = Int(fields[1]) { return v }
        }
        return 0
    }

    /// Serves one connection until EOF or a protocol error. Returns normally on EOF; a malformed
    /// request gets an error answer, an oversized one closes the connection.
    public func serve(_ fd: FileDescriptor) -> ServeOutcome {
        var framer = LineFramer()
        while true {
            do {
                while let line = try framer.nextLine() {
                    let (response, then) = handle(line)
                    try fd.writeAll(try LineFramer.encode(response), until: .after(seconds: 10))
                    if case .shutdown = then { return .shutdownRequested }
                }
                let chunk = try fd.readNow(upTo: 65536)
                if chunk.isEmpty { return .endOfStream }
                framer.append(chunk)
            } catch let error as AgentAPIError {
                logger.error("closing agent connection: \(error.message)")
                return .protocolError(error.message)
            } catch let error as SystemError {
                logger.warning("agent connection failed: \(error.message)")
                return .protocolError(error.message)
            } catch {
                return .protocolError("\(error)")
            }
        }
    }

    public enum ServeOutcome: Sendable, Equatable {
        case endOfStream
        case shutdownRequested
        case protocolError(String)
    }

    enum After { case nothing, shutdown }

    func handle(_ line: [UInt8]) -> (AgentResponse, After) {
        guard let request = try? LineFramer.decode(AgentRequest.self, from: line) else {
            logger.warning("malformed request", metadata: ["bytes": "\(line.count)"])
            return (AgentResponse(id: 0, error: AgentStatus(code: .invalidArgument, message: "malformed request")), .nothing)
        }
        logger.debug("request", metadata: ["id": "\(request.id)", "method": "\(request.method)"])
        switch AgentMethod(rawValue: request.method) {
        case .health:
            return (AgentResponse(id: request.id, health: health()), .nothing)
        case .shutdown:
            return (AgentResponse(id: request.id), .shutdown)
        case nil:
            return (AgentResponse(id: request.id, error: AgentStatus(code: .unimplemented,
                    message: "unknown method '\(request.method)'")), .nothing)
        }
    }
}
