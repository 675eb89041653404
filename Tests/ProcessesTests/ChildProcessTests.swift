import Foundation
import Processes
import SystemCalls
import Testing

@Suite struct ChildProcessTests {
    @Test func exitStatus() throws {
        let p = try ChildProcess.spawn("/bin/sh", ["-c", "exit 3"])
        #expect(try p.wait(until: .after(seconds: 10)) == .exited(3))
        #expect(p.poll() == .exited(3))
    }

    @Test func killedBySignal() throws {
        let p = try ChildProcess.spawn("/bin/sleep", ["30"])
        #expect(try p.wait(until: .after(seconds: 0.2)) == nil)
        #expect(p.kill() == .signalled(SIGKILL))
        #expect(p.kill().exitStatus == 128 + SIGKILL)
    }

    @Test func terminateUsesSIGTERMFirst() throws {
        let p = try ChildProcess.spawn("/bin/sleep", ["30"])
        #expect(p.terminate(grace: 5) == .signalled(SIGTERM))
    }

    @Test func capturesOutputThroughMappedDescriptors() throws {
        let (t, out) = try ChildProcess.run("/bin/sh", ["-c", "echo out; echo err >&2; exit 4"])
        #expect(t == .exited(4))
        #expect(out.contains("out") && out.contains("err"))
    }

    @Test func onlyMappedDescriptorsAreInherited() throws {
        // fd 3 and above are closed in the child even when open (and not CLOEXEC) here.
        let leaked = open("/dev/null", O_RDONLY)
        defer { close(leaked) }
        let (_, out) = try ChildProcess.run("/bin/sh", ["-c", "ls /proc/self/fd | sort -n | tr '\\n' ' '"])
        #expect(out.trimmingCharacters(in: .whitespaces) == "0 1 2 3")  // 3 is ls's own directory handle
    }

    @Test func runKillsAToolThatHangs() throws {
        let watch = Stopwatch()
        let (t, _) = try ChildProcess.run("/bin/sleep", ["30"], timeout: 0.5)
        #expect(t == .signalled(SIGKILL))
        #expect(watch.elapsedSeconds < 5)
    }

    /// A cgroup v2 hierarchy to make test cgroups in: the unified mount of a hybrid host, or the root.
    static let cgroup2Root: String? = {
        guard geteuid() == 0 else { return nil }
        for dir in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] where FileManager.default.fileExists(atPath: dir + "/cgroup.procs")
            && FileManager.default.fileExists(atPath: dir + "/cgroup.controllers") { return dir }
        return nil
    }()

    // Both ways the spawner clones: sharing our memory (vfork-like, through the clone3 trampoline),
    // and with a copy of it (a child that waits for a byte before exec).
    @Test(.enabled(if: cgroup2Root != nil, "needs root and a cgroup v2 hierarchy"), arguments: [false, true])
    func aChildIsBornInTheCgroupItIsGiven(waits: Bool) throws {
        let name = "cocoon-test-born-\(getpid())-\(waits)"
        let dir = Self.cgroup2Root! + "/" + name
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: false)
        defer { rmdir(dir) }
        let cgroupFD = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        #expect(cgroupFD >= 0)
        defer { close(cgroupFD) }
        var options = ChildProcess.Options()
        options.cgroupDescriptor = cgroupFD
        let text: String
        do throws(SystemError) { text = try Self.cgroupsOfAChild(options, waits: waits) } catch {
            // clone3 or CLONE_INTO_CGROUP missing: the callers fall back, and so does this test.
            if error.errno == ENOSYS { print("skipped: the kernel cannot clone into a cgroup"); return }
            throw error
        }
        #expect(text.split(separator: "\n").contains { $0.hasPrefix("0::") && $0.hasSuffix("/" + name) }, "\(text)")
    }

    /// Spawns `cat /proc/self/cgroup` with these options, either way the spawner clones (sharing our memory,
    /// or a copy of it for a child that waits for a byte before exec), and returns what it printed.
    static func cgroupsOfAChild(_ base: ChildProcess.Options, waits: Bool) throws(SystemError) -> String {
        var out: [Int32] = [0, 0], go: [Int32] = [0, 0]
        guard pipe(&out) == 0 else { throw SystemError("pipe", errno: errno) }
        guard pipe(&go) == 0 else { close(out[0]); close(out[1]); throw SystemError("pipe", errno: errno) }
        let reader = FileDescriptor(adopting: out[0])
        defer { reader.close() }
        var options = base
        options.fds = [nil, out[1], out[1]]
        if waits { options.waitDescriptor = go[0] }
        let spawned = Result { () throws(SystemError) in try ChildProcess.spawn("/bin/cat", ["/proc/self/cgroup"], options: options) }
        close(out[1])
        if waits, case .success = spawned { var b: UInt8 = 1; _ = write(go[1], &b, 1) }
        close(go[0]); close(go[1])
        let child = try spawned.get()
        guard (try child.wait(until: .after(seconds: 10))) == .exited(0) else {
            throw SystemError("cat /proc/self/cgroup", errno: ECHILD, detail: "did not exit 0")
        }
        return String(decoding: try reader.read(upTo: 65536, until: .after(seconds: 5)), as: UTF8.self)
    }

    /// cgroup v1 hierarchies of this host the test may use (root only).
    static let cgroup1Roots: [String] = {
        guard geteuid() == 0 else { return [] }
        return ["pids", "memory"].map { "/sys/fs/cgroup/" + $0 }.filter { FileManager.default.fileExists(atPath: $0 + "/tasks") }
    }()

    // The child writes "0" to each `tasks` descriptor before it execs, moving itself in, in both clone modes.
    @Test(.enabled(if: !cgroup1Roots.isEmpty, "needs root and cgroup v1 hierarchies"), arguments: [false, true])
    func aChildMovesItselfIntoTheCgroupsItIsGiven(waits: Bool) throws {
        let name = "cocoon-test-moved-\(getpid())-\(waits)"
        var tasks: [Int32] = []
        defer {
            tasks.forEach { close($0) }
            for root in Self.cgroup1Roots { rmdir(root + "/" + name) }
        }
        for root in Self.cgroup1Roots {
            try FileManager.default.createDirectory(atPath: root + "/" + name, withIntermediateDirectories: false)
            let fd = open(root + "/" + name + "/tasks", O_WRONLY | O_CLOEXEC)
            #expect(fd >= 0)
            tasks.append(fd)
        }
        var options = ChildProcess.Options()
        options.cgroupTaskDescriptors = tasks
        let text = try Self.cgroupsOfAChild(options, waits: waits)
        for root in Self.cgroup1Roots {
            let controller = String(root.split(separator: "/").last!)
            #expect(text.split(separator: "\n").contains { $0.contains(":\(controller):") && $0.hasSuffix(":/" + name) }, "\(text)")
        }
        // Nothing of ours moved: only the child did.
        let own = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        #expect(!own.contains(name), "\(own)")
    }

    @Test func missingExecutableIsAnError() {
        do {
            _ = try ChildProcess.spawn("/nonexistent/qemu", [])
            Issue.record("expected an error")
        } catch {
            #expect(error.errno == ENOENT)
            #expect(error.message.contains("/nonexistent/qemu"))
        }
        #expect(throws: SystemError.self) { try ChildProcess.spawn("relative/path", []) }
    }
}
