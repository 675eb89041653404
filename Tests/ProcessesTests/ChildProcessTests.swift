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
