import CSupport
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

extension ChildProcess {
    /// Runs a short command to completion and returns its stdout+stderr (at most 1 MiB).
    /// Killed at the deadline, so a hung tool never hangs its caller.
    public static func run(_ executable: String, _ arguments: [String], timeout: Double = 10) throws(SystemError) -> (Termination, String) {
        var fds: [Int32] = [0, 0]
        try SystemError.check("pipe") { pipe(&fds) }
        _ = cocoon_set_cloexec(fds[0])
        _ = cocoon_set_cloexec(fds[1])
        let readEnd = FileDescriptor(adopting: fds[0])
        let writeEnd = FileDescriptor(adopting: fds[1])
        let devNull = try FileDescriptor.open("/dev/null", O_RDONLY)
        var options = Options()
        options.fds = [devNull.rawValue, writeEnd.rawValue, writeEnd.rawValue]
        options.environment = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"]
        let child = try spawn(executable, arguments, options: options)
        writeEnd.close()
        let deadline = Deadline.after(seconds: timeout)
        var output: [UInt8] = []
        while output.count < 1 << 20 {
            guard let chunk = try? readEnd.read(upTo: 65536, until: deadline), !chunk.isEmpty else { break }
            output += chunk
        }
        let termination = (try? child.wait(until: deadline)) ?? nil
        return (termination ?? child.kill(), String(decoding: output, as: UTF8.self))
    }
}
