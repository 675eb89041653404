import CSupport
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

extension ChildProcess {
    /// Runs a short command to completion and returns its stdout+stderr (at most 1 MiB).
    /// Killed at the deadline, so a hung tool never hangs its caller.
    public static func run(_ executable: String, _ arguments: [String], timeout: Double = 10) throws(SystemError) -> (Termination, String) {
        var options = Options()
        options.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"]
        return try run(executable, arguments, options: options, input: [], timeout: timeout)
    }

    /// The same with the caller's options (argv0, environment) and bytes for stdin.
    public static func run(_ executable: String, _ arguments: [String], options base: Options, input: [UInt8],
                           timeout: Double) throws(SystemError) -> (Termination, String) {
        let (readEnd, writeEnd) = try makePipe()
        // stdin through a pipe (state JSON for OCI hooks is small: it fits the pipe buffer).
        let (inRead, inWrite) = try makePipe()
        var options = base
        options.fds = [inRead.rawValue, writeEnd.rawValue, writeEnd.rawValue]
        let child = try spawn(executable, arguments, options: options)
        writeEnd.close()
        inRead.close()
        let deadline = Deadline.after(seconds: timeout)
        if !input.isEmpty { try? inWrite.writeAll(input, until: deadline) }
        inWrite.close()
        var output: [UInt8] = []
        while output.count < 1 << 20 {
            guard let chunk = try? readEnd.read(upTo: 65536, until: deadline), !chunk.isEmpty else { break }
            output += chunk
        }
        let termination = (try? child.wait(until: deadline)) ?? nil
        if termination == nil && options.newSession {
            // The child leads its own process group: take its descendants down with it.
            _ = Glibc.kill(-child.pid, SIGKILL)
        }
        return (termination ?? child.kill(), String(decoding: output, as: UTF8.self))
    }

    /// A pipe whose ends are close-on-exec here (the child gets its end through the fd map).
    static func makePipe() throws(SystemError) -> (read: FileDescriptor, write: FileDescriptor) {
        try FileDescriptor.pipe()
    }
}
