import AgentAPI
import CSupport
import Config
import ContainerdAPI
import Foundation
import Logging
import OCI
import Processes
import Sandbox
import Sockets
import SwiftProtobuf
import SystemCalls
import TTRPC

/// containerd-shim-cocoon-v2: `start` finds or starts the pod's shim daemon and prints its address,
/// `delete` cleans up after a shim that is gone, `-v` prints the version.
public enum ShimMain {
    static let groupEnvironment = "_COCOON_SHIM_GROUP"
    static let listenerFD: Int32 = 3

    public static func run(arguments: [String]) -> Never {
        signal(SIGPIPE, SIG_IGN)
        let flags: ShimFlags
        do throws(ShimError) { flags = try ShimFlags.parse(arguments) } catch {
            fail(error.message)
        }
        switch flags.action {
        case .version:
            print("containerd-shim-cocoon-v2:\n  Version:  \(CocoonVersion.string)\n  Runtime:  io.containerd.cocoon.v2")
            exit(0)
        case .start:
            do throws(ShimError) { try start(flags) } catch { fail(error.message) }
            exit(0)
        case .delete:
            delete(flags)
            exit(0)
        case .serve:
            serve(flags)
        }
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data("containerd-shim-cocoon-v2: \(message)\n".utf8))
        exit(1)
    }

    static func bundlePath(_ flags: ShimFlags) -> String {
        flags.bundle.isEmpty ? FileManager.default.currentDirectoryPath : flags.bundle
    }

    // MARK: start

    static func start(_ flags: ShimFlags) throws(ShimError) {
        drainStandardInput()
        let bundle = bundlePath(flags)
        let annotations: [String: String]
        do throws(OCIError) { annotations = try OCI.Spec.load(bundle: bundle).annotations ?? [:] } catch {
            throw ShimError(error.code, error.message)
        }
        let group = ShimAddress.group(containerID: flags.id, annotations: annotations)
        let address = ShimAddress.socketAddress(containerdAddress: flags.address, namespace: flags.namespace, group: group)
        let path = ShimAddress.path(of: address)
        do throws(SystemError) { try Files.makeDirectories(ShimAddress.socketDirectory, mode: 0o711) } catch {
            throw ShimError(.internal, "cannot create \(ShimAddress.socketDirectory): \(error.message)")
        }
        // Two containers of a pod may start at once: one finds the socket or makes it, never both.
        // One lock for all of cocoon's starts (held for milliseconds, released with this process),
        // so that no per-pod lock file is left behind.
        let lockPath = ShimAddress.socketDirectory + "/cocoon-start.lock"
        let lock = open(lockPath, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard lock >= 0 else { throw ShimError(.internal, "cannot open \(lockPath): \(String(cString: strerror(errno)))") }
        defer { close(lock) }
        // Held for milliseconds by whoever has it; a start stuck for 10 s is reported, not waited for.
        let deadline = Deadline.after(seconds: 10)
        while flock(lock, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR, !deadline.hasPassed else {
                throw ShimError(.deadlineExceeded, "cannot lock \(lockPath) within 10 s: another shim start holds it")
            }
            sleep(seconds: 0.01)
        }
        // Another container of the pod started the shim already: join it.
        if canConnect(path) {
            try publish(address, bundle: bundle)
            return
        }
        let listener: FileDescriptor
        do throws(SystemError) {
            // Replaces a dead shim's socket; created 0600, so only root reaches the Task API.
            listener = try StreamSocket.listenUnix(path: path)
        } catch {
            throw ShimError(.internal, "cannot listen on \(path): \(error.message)")
        }
        defer { listener.close() }
        let daemon: ChildProcess
        do throws(SystemError) {
            let devNull = try FileDescriptor.open("/dev/null", O_RDWR)
            defer { devNull.close() }
            var options = ChildProcess.Options()
            // Not containerd's stdout/stderr: it reads those to the end to get the address.
            options.fds = [devNull.rawValue, devNull.rawValue, devNull.rawValue, listener.rawValue]
            var environment = ProcessInfo.processInfo.environment
            environment[groupEnvironment] = group
            options.environment = environment
            options.newSession = true
            options.killWithParent = false
            // A mount namespace of its own: the rootfs and shared-directory mounts of the pod
            // disappear with the daemon however it ends, so a killed shim leaves no mount behind.
            options.cloneFlags = 0x0002_0000  // CLONE_NEWNS (not exported by Glibc to Swift)
            var args = ["-namespace", flags.namespace, "-id", flags.id, "-address", flags.address,
                        "-publish-binary", flags.publishBinary, "-bundle", bundle]
            if flags.debug { args.append("-debug") }
            args.append("serve")
            daemon = try ChildProcess.spawn(try Files.readLink("/proc/self/exe"), args, options: options)
        } catch {
            unlink(path)
            throw ShimError(.internal, "cannot start the shim daemon: \(error.message)")
        }
        do throws(ShimError) { try publish(address, bundle: bundle) } catch {
            daemon.signal(SIGKILL)
            unlink(path)
            throw error
        }
    }

    /// containerd passes its runtime options as a protobuf on stdin; cocoon takes its settings from
    /// configuration.toml, so they are read and ignored.
    static func drainStandardInput() {
        guard isatty(0) == 0 else { return }
        let stdin = FileDescriptor(adopting: dup(0))
        defer { stdin.close() }
        let deadline = Deadline.after(seconds: 1)
        while let ready = try? stdin.waitReadable(until: deadline), ready {
            guard let bytes = try? stdin.readNow(upTo: 65536), !bytes.isEmpty else { return }
        }
    }

    static func canConnect(_ path: String) -> Bool {
        // One short try: a dead shim's socket refuses at once, and waiting would only slow containerd.
        guard let fd = try? StreamSocket.connectUnix(path: path, until: .after(seconds: 0.2)) else { return false }
        fd.close()
        return true
    }

    /// `<bundle>/address` (written whole, then renamed) and the address on stdout, as containerd expects.
    static func publish(_ address: String, bundle: String) throws(ShimError) {
        let temp = bundle + "/.address"
        do throws(SystemError) {
            try Files.writeString(temp, address, mode: 0o600)
        } catch {
            throw ShimError(.internal, "cannot write \(bundle)/address: \(error.message)")
        }
        guard rename(temp, bundle + "/address") == 0 else {
            throw ShimError(.internal, "cannot write \(bundle)/address: \(String(cString: strerror(errno)))")
        }
        FileHandle.standardOutput.write(Data(address.utf8))
    }

    // MARK: delete

    /// Called by containerd when a shim is gone (or a start failed): remove what is left of the
    /// container, never a VM other containers still use, and answer with a DeleteResponse.
    /// Idempotent: a second call finds nothing and answers the same.
    static func delete(_ flags: ShimFlags) {
        let bundle = bundlePath(flags)
        var response = Containerd_Task_V2_DeleteResponse.with {
            $0.exitStatus = 128 + UInt32(SIGKILL)
            $0.exitedAt = Google_Protobuf_Timestamp(date: Date())
        }
        let logger = Logger(label: "cocoon.shim") { _ in SwiftLogNoOpLogHandler() }
        if let address = try? Files.readString(bundle + "/address"), canConnect(ShimAddress.path(of: address)) {
            // The pod's shim still runs: it removes the container and keeps the VM for the others.
            if let fd = try? StreamSocket.connectUnix(path: ShimAddress.path(of: address), until: .after(seconds: 5)),
               let client = try? TTRPCClient(stream: DescriptorStream(fd), logger: logger) {
                defer { client.close() }
                let request = Containerd_Task_V2_DeleteRequest.with { $0.id = flags.id }
                if let answer = try? client.call(ShimService.taskServiceName, "Delete", request,
                                                 returning: Containerd_Task_V2_DeleteResponse.self,
                                                 metadata: [("containerd-namespace-ttrpc", flags.namespace)], timeout: 30) {
                    response = answer
                }
            }
        } else {
            // The shim is gone, and with its mount namespace its mounts; QEMU and virtiofsd died
            // with it. Its run directory is swept here.
            if let config = try? Configuration.load() {
                for stale in StaleSandboxes.sweep(root: config.runtime.root) {
                    FileHandle.standardError.write(Data("removed the leftovers of sandbox \(stale)\n".utf8))
                }
            }
            RootfsMounts.unmount(bundle + "/rootfs")
            if let address = try? Files.readString(bundle + "/address") {
                unlink(ShimAddress.path(of: address))
            }
        }
        let bytes: [UInt8] = (try? response.serializedBytes()) ?? []
        FileHandle.standardOutput.write(Data(bytes))
    }

    // MARK: serve

    static func serve(_ flags: ShimFlags) -> Never {
        // Mounts made here must not propagate back to the host's namespace.
        _ = mount("none", "/", nil, UInt(MS_REC | MS_SLAVE), nil)
        let bundle = bundlePath(flags)
        let logFD = openLog(bundle: bundle)
        let level: Logger.Level = flags.debug ? .debug : .info
        let logger = Logger(label: "cocoon.shim") { label in ShimLogHandler(label: label, fd: logFD, level: level) }
        _ = chdir("/")
        let environment = ProcessInfo.processInfo.environment
        let group = environment[groupEnvironment] ?? flags.id
        let config: Configuration
        do throws(ConfigError) { config = try Configuration.load() } catch {
            // Nothing can run without it; containerd shows the shim's log line and the failed start.
            logger.error("\(error.message)")
            exit(1)
        }
        let socketPath = ShimAddress.path(of: ShimAddress.socketAddress(
            containerdAddress: flags.address, namespace: flags.namespace, group: group))
        let service = ShimService(namespace: flags.namespace, group: group, config: config,
                                  eventsAddress: environment["TTRPC_ADDRESS"], logger: logger,
                                  onIdleShutdown: {
                                      unlink(socketPath)
                                      exit(0)
                                  })
        let server = TTRPCServer(services: [service.taskService()], logger: logger)
        let listener = FileDescriptor(adopting: listenerFD)
        _ = cocoon_set_cloexec(listenerFD)
        logger.info("shim started", metadata: ["group": "\(group)", "pid": "\(getpid())"])
        while true {
            let connection: FileDescriptor
            do throws(SystemError) {
                connection = try StreamSocket.accept(listener, until: .after(seconds: 86_400 * 365))
            } catch {
                if error.errno == EINTR || error.errno == ETIMEDOUT || error.errno == ECONNABORTED { continue }
                logger.error("accept on the shim socket: \(error.message)")
                service.finish()
                unlink(socketPath)
                exit(1)
            }
            do throws(SystemError) {
                try startDetachedThread { server.serve(DescriptorStream(connection)) }
            } catch {
                logger.error("cannot serve a connection: \(error.message)")
                connection.close()
            }
        }
    }

    /// containerd reads the shim's log from the `log` FIFO in the bundle (it holds it open
    /// read-write, so this open does not block); without it, logs are dropped.
    static func openLog(bundle: String) -> Int32 {
        let fd = open(bundle + "/log", O_WRONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return open("/dev/null", O_WRONLY | O_CLOEXEC) }
        _ = cocoon_fcntl_setfl(fd, cocoon_fcntl_getfl(fd) & ~O_NONBLOCK)
        return fd
    }
}
