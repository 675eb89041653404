import Foundation
import Processes
import Sandbox
import SystemCalls

/// The host ends of one process's stdio, opened from what containerd put in the request: FIFO
/// paths (the usual case), `binary://PATH?args` (a logging driver started here, fed through pipes
/// on its fds 3 and 4) or `file://PATH` (appended to). Empty means none.
final class ProcessIO: @unchecked Sendable {
    private var descriptors: [FileDescriptor] = []
    private var stdinFD: FileDescriptor?
    private(set) var host: HostStdio
    private var logDriver: ChildProcess?

    private init() {
        host = HostStdio(stdin: nil, stdout: -1, stderr: -1, terminal: false)
    }

    static func open(stdin: String, stdout: String, stderr: String, terminal: Bool,
                     containerID: String, namespace: String) throws(ShimError) -> ProcessIO {
        let io = ProcessIO()
        var ok = false
        defer { if !ok { io.close() } }
        do throws(SystemError) {
            var stdinRaw: Int32?
            if !stdin.isEmpty {
                // Non-blocking so that opening does not wait for containerd's writer; the relay
                // polls before each read.
                let fd = try FileDescriptor.open(stdin, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
                io.stdinFD = fd
                io.descriptors.append(fd)
                stdinRaw = fd.rawValue
            }
            let out: Int32
            let err: Int32
            if let uri = URLComponents(string: stdout), uri.scheme == "binary" {
                (out, err) = try io.startLogDriver(uri, containerID: containerID, namespace: namespace)
            } else if let uri = URLComponents(string: stdout), uri.scheme == "file" {
                let fd = try openLogFile(uri.path)
                out = fd
                err = fd
            } else {
                out = try io.openOutput(stdout)
                err = terminal ? out : try io.openOutput(stderr)
            }
            io.host = HostStdio(stdin: stdinRaw, stdout: out, stderr: err, terminal: terminal)
        } catch {
            throw ShimError(.invalidArgument, "process stdio: \(error.message)")
        }
        ok = true
        return io

        func openLogFile(_ path: String) throws(SystemError) -> Int32 {
            guard path.hasPrefix("/") else { throw SystemError("open \(stdout)", errno: EINVAL, detail: "file:// needs an absolute path") }
            try Files.makeDirectories((path as NSString).deletingLastPathComponent, mode: 0o755)
            let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, mode: 0o644)
            io.descriptors.append(fd)
            return fd.rawValue
        }
    }

    /// A FIFO the client made. Opened read-write so that opening never blocks on the client's reader
    /// and a client that goes away does not end the process with SIGPIPE, as containerd's runc shim
    /// keeps a reader open for the same reason.
    private func openOutput(_ path: String) throws(SystemError) -> Int32 {
        let fd = path.isEmpty
            ? try FileDescriptor.open("/dev/null", O_WRONLY | O_CLOEXEC)
            : try FileDescriptor.open(path, O_RDWR | O_CLOEXEC)
        descriptors.append(fd)
        return fd.rawValue
    }

    /// containerd's binary logging protocol: the driver gets stdout on fd 3, stderr on fd 4 and a
    /// pipe on fd 5 that it closes once it is ready; CONTAINER_ID and CONTAINER_NAMESPACE in its
    /// environment; query parameters as arguments.
    private func startLogDriver(_ uri: URLComponents, containerID: String, namespace: String) throws(SystemError) -> (Int32, Int32) {
        let path = uri.path
        guard path.hasPrefix("/") else { throw SystemError("binary log driver \(uri)", errno: EINVAL, detail: "an absolute path is required") }
        var args: [String] = []
        for item in uri.queryItems ?? [] {
            args.append(item.name)
            if let v = item.value, !v.isEmpty { args.append(v) }
        }
        let out = try FileDescriptor.pipe()
        let err = try FileDescriptor.pipe()
        let ready = try FileDescriptor.pipe()
        let devNull = try FileDescriptor.open("/dev/null", O_RDWR | O_CLOEXEC)
        defer {
            out.read.close()
            err.read.close()
            ready.write.close()
            devNull.close()
        }
        var options = ChildProcess.Options()
        options.fds = [devNull.rawValue, devNull.rawValue, devNull.rawValue, out.read.rawValue, err.read.rawValue, ready.write.rawValue]
        options.environment = ["CONTAINER_ID": containerID, "CONTAINER_NAMESPACE": namespace,
                               "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        options.killWithParent = false
        let child = try ChildProcess.spawn(path, args, options: options)
        logDriver = child
        descriptors.append(out.write)
        descriptors.append(err.write)
        ready.write.close()
        // Ready when it closes fd 5 (EOF here); a driver that never gets ready is an error, not a hang.
        let deadline = Deadline.after(seconds: 10)
        while true {
            guard try ready.read.waitReadable(until: deadline) else {
                throw SystemError("binary log driver \(path)", errno: ETIMEDOUT, detail: "it did not close fd 5 within 10 s")
            }
            if try ready.read.readNow(upTo: 64).isEmpty { break }
        }
        return (out.write.rawValue, err.write.rawValue)
    }

    /// Closes every host descriptor; a logging driver sees EOF and gets 10 s to finish.
    func close() {
        for fd in descriptors { fd.close() }
        descriptors.removeAll()
        if let driver = logDriver {
            logDriver = nil
            if (try? driver.wait(until: .after(seconds: 10))) == nil {
                _ = driver.kill()
            }
        }
    }
}
