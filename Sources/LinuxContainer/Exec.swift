#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Cgroups
import CSupport
import OCI
import Processes
import SystemCalls

extension ContainerRuntime {
    public struct ExecOptions: Sendable {
        public var pidFile: String?
        public var consoleSocket: Int32?
        public var stdio: [Int32] = [0, 1, 2]
        public init() {}
    }

    /// The process `exec` starts when given only arguments: the container's own process with them
    /// (runc takes the same template, so capabilities and environment match the container's).
    public func execTemplate(_ id: String) throws(LinuxContainerError) -> OCI.Process {
        let record = try store.load(id)
        do {
            return try Spec.load(bundle: record.bundle).process ?? OCI.Process()
        } catch {
            throw LinuxContainerError(error.code, step: "", error.message)
        }
    }

    /// Starts a process in a running container: its namespaces, its cgroup, its root.
    public func exec(_ id: String, process: OCI.Process, options: ExecOptions = ExecOptions()) throws(LinuxContainerError) -> ChildProcess {
        let record = try store.load(id)
        let status = status(record)
        guard status == .running || status == .created else {
            throw LinuxContainerError(.failedPrecondition, step: "", "cannot exec in container \(id): it is \(status.rawValue)")
        }
        var probe = Spec(process: process)
        probe.linux = nil
        if let problem = probe.problems(file: "exec process").first {
            throw LinuxContainerError(.invalidArgument, step: "", problem.message)
        }
        if process.terminal == true && options.consoleSocket == nil {
            throw LinuxContainerError(.invalidArgument, step: "", "exec with a terminal needs a console socket (--console-socket)")
        }
        let spec: Spec
        do { spec = try Spec.load(bundle: record.bundle) } catch { throw LinuxContainerError(error.code, step: "", error.message) }

        // Every namespace of the container that is not ours: user first, mount last, pid for children.
        var joins: [FileDescriptor] = []
        var joinsUserNS = false
        var pidNamespace: FileDescriptor?
        var timeNamespace: FileDescriptor?
        defer { timeNamespace?.close() }
        for name in ["user", "ipc", "uts", "net", "cgroup", "time", "mnt", "pid"] {
            let theirs = "/proc/\(record.pid)/ns/\(name)"
            let theirLink = (try? FileManager.default.destinationOfSymbolicLink(atPath: theirs)) ?? ""
            let ourLink = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/ns/\(name)")) ?? ""
            guard !theirLink.isEmpty, theirLink != ourLink else { continue }
            let fd: FileDescriptor
            do { fd = try FileDescriptor.open(theirs, O_RDONLY) } catch {
                throw LinuxContainerError(error.code, step: "exec: open \(theirs)", error.message)
            }
            if name == "pid" { pidNamespace = fd } else if name == "time" { timeNamespace = fd } else { joins.append(fd) }
            if name == "user" { joinsUserNS = true }
        }
        guard isAlive(record) else { throw LinuxContainerError(.failedPrecondition, step: "", "container \(id) stopped") }

        let (parentSync, childSync): (SyncSocket, SyncSocket)
        do { (parentSync, childSync) = try SyncSocket.pair() } catch { throw LinuxContainerError(step: "socketpair", error.message) }
        var fds: [Int32?] = options.stdio.map { Optional($0) }
        let syncFD = Int32(fds.count)
        fds.append(childSync.fd.rawValue)
        var consoleFD: Int32?
        if let console = options.consoleSocket {
            consoleFD = Int32(fds.count)
            fds.append(console)
        }
        var timeFD: Int32?
        if let timeNamespace {
            timeFD = Int32(fds.count)
            fds.append(timeNamespace.rawValue)
        }
        var processOptions = ChildProcess.Options()
        processOptions.fds = fds
        processOptions.environment = [InitProcess.syncFDEnvironment: "\(syncFD)", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        processOptions.newSession = false
        processOptions.killWithParent = false
        processOptions.joinNamespaces = joins.map(\.rawValue)
        processOptions.pidNamespace = pidNamespace?.rawValue
        processOptions.becomeRoot = joinsUserNS
        processOptions.argv0 = "cocoon-init"
        // Host paths do not resolve inside the container's mount namespace; a sealed copy also keeps
        // the host binary out of reach of the container's processes, which can see this one.
        let (sealed, closeSealed) = try sealedInit()
        defer { if closeSealed { close(sealed) } }
        processOptions.executableDescriptor = sealed

        // cgroup v2: born in the container's cgroup (CLONE_INTO_CGROUP); v1: the child moves itself in before
        // exec through `tasks` descriptors (no grace-period wait), as in create.
        let containerCgroup = try cgroup(record)
        let taskFiles: [FileDescriptor]
        do throws(CgroupError) { taskFiles = try containerCgroup.openTaskFiles() } catch {
            throw LinuxContainerError(error.code, step: "exec: join the container's cgroup", error.message)
        }
        defer { taskFiles.forEach { $0.close() } }
        processOptions.cgroupTaskDescriptors = taskFiles.map(\.rawValue)
        var cgroupDir: Int32 = -1
        if containerCgroup.mode == .unified { cgroupDir = open(containerCgroup.directories[0], O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        defer { if cgroupDir >= 0 { close(cgroupDir) } }
        var bornInCgroup = !taskFiles.isEmpty
        var spawned: ChildProcess?
        if cgroupDir >= 0 {
            var into = processOptions
            into.cgroupDescriptor = cgroupDir
            do throws(SystemError) {
                spawned = try ChildProcess.spawn(initExecutable, [], options: into)
                bornInCgroup = true
            } catch where error.errno == ENOSYS {
                // Spawned and moved in below.
            } catch {
                throw Self.execSpawnError(error, initExecutable)
            }
        }
        if spawned == nil {
            do throws(SystemError) { spawned = try ChildProcess.spawn(initExecutable, [], options: processOptions) } catch {
                throw Self.execSpawnError(error, initExecutable)
            }
        }
        let child = spawned!
        childSync.fd.close()
        var ok = false
        defer { if !ok { child.kill() } }
        if !bornInCgroup {
            do throws(CgroupError) {
                try containerCgroup.join(pid: child.pid)
            } catch {
                throw LinuxContainerError(error.code, step: "exec: join the container's cgroup", error.message)
            }
        }
        var execSpec = spec
        execSpec.process = process
        try parentSync.send(InitConfig(containerID: id, spec: execSpec, rootfs: record.rootfs, noPivot: false, execFifo: "",
                                       preservedFDs: 0, newMountNamespace: false, newUserNamespace: false,
                                       newCgroupNamespace: false, bundle: record.bundle, consoleSocketFD: consoleFD,
                                       execMode: true, timeNamespaceFD: timeFD))
        switch try parentSync.receive(InitReport.self, until: .after(seconds: 60)) {
        case .ready: break
        case .failed(let error): throw error
        case .runtimeHooks: throw LinuxContainerError(.internal, step: "exec", "unexpected hook request")
        case nil:
            throw LinuxContainerError(step: "exec", "the process exited before it was ready")
        }
        if let pidFile = options.pidFile {
            do { try Files.writeString(pidFile, "\(child.pid)") } catch {
                throw LinuxContainerError(step: "write --pid-file \(pidFile)", error.message)
            }
        }
        ok = true
        return child
    }

    static func execSpawnError(_ error: SystemError, _ initExecutable: String) -> LinuxContainerError {
        if error.errno == ENOENT {
            return LinuxContainerError(.failedPrecondition, step: "exec",
                "\(initExecutable) cannot run inside the container: it must be the static build (`make` puts it in build/bin)")
        }
        return LinuxContainerError(error.code, step: "exec: start the process", error.message)
    }
}
