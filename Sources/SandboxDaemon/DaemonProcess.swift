import CSupport
import Config
import Foundation
import Logging
import OCI
import Sandbox
import SystemCalls

/// The per-sandbox daemon's body (`cocoon sandbox-daemon`): boots the VM sized from the first
/// container's bundle, serves the control socket (the daemon API plus the agent's channels), says
/// "ready" (or why not) on `readyDescriptor`, and holds the VM until its last container is deleted,
/// the VM fails, or SIGTERM. It runs in a session of its own with no stdio of its caller's, so
/// that containerd's runc shim and docker see the caller's pipes close when the command ends.
public enum DaemonProcess {
    public struct Parameters: Sendable {
        public var sandboxName: String
        public var bundle: String
        public var networkNamespace: String?
        /// The control socket's path: under the caller's `--root`, where later commands look.
        public var controlSocket: String
        public var readyDescriptor: Int32

        public init(sandboxName: String, bundle: String, networkNamespace: String?, controlSocket: String, readyDescriptor: Int32) {
            self.sandboxName = sandboxName
            self.bundle = bundle
            self.networkNamespace = networkNamespace
            self.controlSocket = controlSocket
            self.readyDescriptor = readyDescriptor
        }
    }

    /// Blocks the stop signals into a signalfd. Call first thing, before threads are started.
    public static func blockSignals() -> Int32 {
        signal(SIGPIPE, SIG_IGN)
        let stops = [SIGTERM, SIGINT, SIGHUP]
        return stops.withUnsafeBufferPointer { cocoon_signalfd($0.baseAddress, Int32($0.count)) }
    }

    /// Returns the process's exit code.
    public static func run(_ p: Parameters, config: Configuration, signalDescriptor: Int32, logger: Logger) -> Int32 {
        let ready = FileDescriptor(adopting: p.readyDescriptor)
        _ = cocoon_set_cloexec(p.readyDescriptor)
        @discardableResult
        func report(_ line: String) -> Bool {
            let delivered = StandIn.writeLine(ready, line)
            ready.close()
            return delivered
        }
        let spec: OCI.Spec
        do throws(OCIError) {
            spec = try OCI.Spec.load(bundle: p.bundle)
        } catch {
            report("error \(error.code.rawValue) \(error.message)")
            return 1
        }
        var options = Sandbox.BootOptions()
        options.shareFilesystem = true
        let size = VMSizing.size(for: spec.linux?.resources, config: config.hypervisor)
        options.memoryMiB = size.memoryMiB
        options.vcpus = size.vcpus
        options.hostname = spec.hostname ?? ""
        options.networkNamespace = p.networkNamespace
        let sandbox: Sandbox
        do throws(SandboxError) {
            sandbox = try Sandbox.boot(id: p.sandboxName, configuration: config, options: options, logger: logger)
        } catch {
            report("error \(error.code.rawValue) cannot boot the VM: \(error.description)")
            return 1
        }
        let service = DaemonService(sandbox: sandbox, logger: logger)
        do throws(SandboxError) {
            try sandbox.serveControlSocket(path: p.controlSocket, local: [DaemonService.channelName: { service.serve($0) }])
        } catch {
            sandbox.shutdown()
            report("error \(error.code.rawValue) \(error.message)")
            return 1
        }
        sandbox.startMonitor()
        guard report("ready") else {
            // The `create` that started us is gone (killed mid-way): nobody will ever use this VM.
            logger.warning("the command that started this daemon is gone; stopping", metadata: ["sandbox": "\(p.sandboxName)"])
            sandbox.shutdown()
            unlink(p.controlSocket)
            return 1
        }
        let reason = service.waitUntilFinished {
            (try? Poll.wait(for: [signalDescriptor], events: Int16(POLLIN), until: .now())) != nil
        }
        logger.info("sandbox daemon stopping: \(reason)", metadata: ["sandbox": "\(p.sandboxName)"])
        sandbox.shutdown()
        unlink(p.controlSocket)
        return 0
    }
}
