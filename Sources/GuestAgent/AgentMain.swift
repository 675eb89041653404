import AgentAPI
import CSupport
import LinuxContainer
import Logging
import Mux
import Sockets
import SystemCalls
import TTRPC
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif

/// Where the agent listens.
public enum ListenAddress: Sendable, Equatable {
    case unix(String)
    case vsock(port: UInt32)
    /// The virtio-serial port named `AgentChannel.portName`.
    case serialPort

    public static func parse(_ text: String) -> ListenAddress? {
        if text.hasPrefix("unix:"), text.count > 5 { return .unix(String(text.dropFirst(5))) }
        if text.hasPrefix("vsock:"), let port = UInt32(text.dropFirst(6)) { return .vsock(port: port) }
        if text == "serial" { return .serialPort }
        return nil
    }
}

public enum AgentMain {
    public static let usage = """
        usage: cocoon-agent [--listen unix:PATH|vsock:PORT|serial] [--log-level LEVEL] [--state-root DIR]
          As PID 1 in a cocoon VM it needs no arguments: the channel and log level come from the
          kernel command line (cocoon.channel=serial|vsock, cocoon.log=LEVEL).
          As a plain process it serves the same API on --listen (for tests and development), keeping
          container state under --state-root (default /run/cocoon-agent).
        """

    /// Parsed by hand: the agent is /init in the initramfs, and a small binary boots faster.
    public struct Arguments: Sendable, Equatable {
        public var listen: ListenAddress?
        public var level: Logger.Level?
        public var stateRoot = "/run/cocoon-agent"
    }

    public static func parseArguments(_ args: [String]) -> Result<Arguments, AgentUsageError> {
        var parsed = Arguments()
        var i = 0
        while i < args.count {
            let arg = args[i]
            func value() -> String? { i + 1 < args.count ? args[i + 1] : nil }
            switch arg {
            case "--listen":
                guard let v = value(), let addr = ListenAddress.parse(v) else {
                    return .failure(AgentUsageError(message: "--listen needs unix:PATH, vsock:PORT or serial"))
                }
                parsed.listen = addr
                i += 2
            case "--log-level":
                guard let v = value(), let l = Logger.Level(rawValue: v) else {
                    return .failure(AgentUsageError(message: "--log-level needs one of: trace, debug, info, notice, warning, error, critical"))
                }
                parsed.level = l
                i += 2
            case "--state-root":
                guard let v = value(), v.hasPrefix("/"), v.utf8.count < 200 else {
                    return .failure(AgentUsageError(message: "--state-root needs an absolute directory path"))
                }
                parsed.stateRoot = v
                i += 2
            default:
                return .failure(AgentUsageError(message: "unknown argument '\(arg)'"))
            }
        }
        return .success(parsed)
    }

    public static func run(arguments: [String]) -> Never {
        // The container init stage is this binary too (the guest has no other): ContainerRuntime
        // starts it with the sync descriptor in its environment.
        if getenv(InitProcess.syncFDEnvironment) != nil {
            InitProcess.main(environment: ProcessInfo.processInfo.environment)
        }
        let isInit = getpid() == 1
        let cmdline = isInit ? ((try? Files.readString("/proc/cmdline")) ?? "") : ""
        var listen: ListenAddress?
        var level = ConsoleLogHandler.level(fromKernelCommandLine: cmdline)
        var stateRoot = Arguments().stateRoot
        switch parseArguments(arguments) {
        case .success(let parsed):
            listen = parsed.listen
            if let lv = parsed.level { level = lv }
            stateRoot = parsed.stateRoot
        case .failure(let e):
            writeToStandardError("cocoon-agent: \(e.message)\n\(usage)\n")
            if !isInit { exit(2) }
        }
        let finalLevel = level
        let logger = Logger(label: "cocoon-agent") { ConsoleLogHandler(label: $0, level: finalLevel) }

        if isInit {
            GuestInit.mountEssentials(logger: logger)
            GuestInit.startReaper(logger: logger)
            if listen == nil {
                listen = cmdline.split(separator: " ").contains("cocoon.channel=vsock") ? .vsock(port: AgentChannel.vsockPort) : .serialPort
            }
        }
        guard let address = listen else {
            writeToStandardError("cocoon-agent: --listen is required when not running as PID 1\n\(usage)\n")
            exit(2)
        }
        logger.info("cocoon-agent \(CocoonVersion.string) ready", metadata: ["pid": "\(getpid())", "listen": "\(address)"])
        let service = AgentService(mode: isInit ? .guest : .hostProcess, stateRoot: isInit ? "/run/cocoon" : stateRoot,
                                   logger: logger) {
            finish(isInit: isInit, logger: logger)
        }
        serveForever(address, service: service, isInit: isInit, logger: logger)
    }

    /// Never returns: as PID 1 every error is logged and retried after a pause.
    static func serveForever(_ address: ListenAddress, service: AgentService, isInit: Bool, logger: Logger) -> Never {
        while true {
            do {
                switch address {
                case .serialPort:
                    let fd = try SerialPort.open(name: AgentChannel.portName, until: .after(seconds: 30))
                    // One long-lived port. It reads end of file while no host is connected: each host
                    // connection is a new mux session on the same descriptor.
                    let stream = DescriptorStream(fd)
                    while true {
                        serveMux(on: stream, service: service, logger: logger)
                        sleep(seconds: 0.05)
                    }
                case .unix(let path):
                    let listener = try StreamSocket.listenUnix(path: path)
                    try acceptLoop(listener, service: service, logger: logger)
                case .vsock(let port):
                    let listener = try StreamSocket.listenVsock(port: port)
                    try acceptLoop(listener, service: service, logger: logger)
                }
            } catch {
                logger.error("agent channel failed: \(error); retrying in 1 s")
                if !isInit { exit(1) }
                sleep(seconds: 1)
            }
        }
    }

    /// Serves ttrpc on every control channel the host opens, until the mux ends.
    public static func serveMux(on stream: any ByteStream, service: AgentService, logger: Logger) {
        let mux: Mux
        do throws(MuxError) {
            mux = try Mux(stream: stream, role: .guest, logger: logger)
        } catch {
            logger.error("cannot start the mux: \(error.message)")
            return
        }
        let server = TTRPCServer(services: [service.ttrpcService(mux: mux)], logger: logger)
        while true {
            let channel: MuxChannel
            do throws(MuxError) {
                channel = try mux.accept(named: AgentChannel.controlChannel, until: nil)
            } catch {
                logger.debug("host session ended: \(error.message)")
                return
            }
            do {
                try startDetachedThread { server.serve(channel) }
            } catch {
                logger.error("cannot serve a control channel: \(error)")
                channel.reset(reason: "agent out of threads")
            }
        }
    }

    static func acceptLoop(_ listener: FileDescriptor, service: AgentService, logger: Logger) throws(SystemError) -> Never {
        while true {
            let raw = try SystemError.check("accept") { cocoon_accept_cloexec(listener.rawValue) }
            let conn = FileDescriptor(adopting: raw)
            try startDetachedThread {
                serveMux(on: DescriptorStream(conn), service: service, logger: logger)
                conn.close()
            }
        }
    }

    static func finish(isInit: Bool, logger: Logger) -> Never {
        if isInit { GuestInit.powerOff(logger: logger) }
        logger.info("shutdown requested; exiting")
        exit(0)
    }
}

public struct AgentUsageError: Error, Sendable {
    public let message: String
}

/// virtio-serial ports appear as /dev/vportNpM; their names are in sysfs.
enum SerialPort {
    static func open(name: String, until deadline: Deadline) throws(SystemError) -> FileDescriptor {
        while true {
            if let device = find(name: name) {
                return try FileDescriptor.open(device, O_RDWR)
            }
            if deadline.hasPassed {
                throw SystemError("find virtio-serial port \(name)", errno: ENOENT, detail: "no /sys/class/virtio-ports/*/name matches")
            }
            sleep(seconds: 0.01)
        }
    }

    static func find(name: String) -> String? {
        let base = "/sys/class/virtio-ports"
        for port in Files.entries(base).map(\.name) where !port.hasPrefix(".") {
            let portName = (try? Files.readString("\(base)/\(port)/name"))?.split(separator: "\n").first.map(String.init)
            if portName == name { return "/dev/\(port)" }
        }
        return nil
    }
}
