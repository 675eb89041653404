import Foundation

/// Runs a command with posix_spawn and polls waitpid for its exit: unlike Foundation.Process, it
/// does not depend on SIGCHLD reaching the process (a `podman run -d` was seen to lose it).
public enum Subprocess {
    /// Adds a file action closing every descriptor above stdio in the child. glibc's
    /// posix_spawn_file_actions_addclosefrom_np is a GNU extension the Glibc module does not show, hence dlsym.
    public static func closeInheritedDescriptors(_ actions: inout posix_spawn_file_actions_t) {
        typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
        // Without it the parallel-test hang this prevents would come back unexplained: stop instead (glibc >= 2.34).
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else {
            preconditionFailure("glibc lacks posix_spawn_file_actions_addclosefrom_np (needs 2.34 or later)")
        }
        _ = unsafeBitCast(symbol, to: CloseFrom.self)(&actions, 3)
    }

    /// `/bin/bash -c SCRIPT` with stdin from /dev/null; (status, stdout+stderr). Killed at the timeout.
    public static func bash(_ script: String, timeout: Double = 60) throws -> (Int32, String) {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("subprocess-" + UUID().uuidString).path
        defer { try? FileManager.default.removeItem(atPath: out) }
        var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Tests run in parallel: without this a daemon started here (systemd, containerd) would keep
        // another test's pipe open and that test would wait for an EOF that never comes.
        closeInheritedDescriptors(&actions)
        let arguments: [String] = ["/bin/bash", "-c", script]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let err = posix_spawn(&pid, "/bin/bash", &actions, nil, argv, environ)
        guard err == 0 else { throw PrivateContainerd.Failure("posix_spawn /bin/bash: \(String(cString: strerror(err)))") }
        let deadline = Date().addingTimeInterval(timeout)
        var status: Int32 = 0
        while true {
            let r = waitpid(pid, &status, WNOHANG)
            if r == pid { break }
            if r < 0 && errno != EINTR { throw PrivateContainerd.Failure("waitpid: \(String(cString: strerror(errno)))") }
            if Date() > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                break
            }
            usleep(10_000)
        }
        let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        return (code, (try? String(contentsOfFile: out, encoding: .utf8)) ?? "")
    }
}
