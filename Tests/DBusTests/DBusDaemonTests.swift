@testable import DBus
import Foundation
import Sockets
import SystemCalls
import TestSupport
import Testing

/// The client against a real dbus-daemon (Debian's), started on a private socket for the test.
@Suite(.enabled(if: DBusDaemon.skipReason == nil, Comment(rawValue: DBusDaemon.skipReason ?? "")))
struct DBusDaemonTests {

    /// A bus of its own: a config that listens on one socket and lets its own uid do anything.
    final class PrivateBus {
        let directory = NSTemporaryDirectory() + "cocoon-dbus-\(UUID().uuidString)"
        var socket: String { directory + "/bus" }
        var pid: pid_t = 0

        init() throws {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let config = """
                <!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
                 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
                <busconfig>
                  <type>session</type>
                  <listen>unix:path=\(directory)/bus</listen>
                  <auth>EXTERNAL</auth>
                  <policy context="default">
                    <allow send_destination="*" eavesdrop="true"/>
                    <allow eavesdrop="true"/>
                    <allow own="*"/>
                  </policy>
                </busconfig>
                """
            try config.write(toFile: directory + "/bus.conf", atomically: true, encoding: .utf8)
            // posix_spawn and a polled waitpid: Foundation.Process waits on SIGCHLD, which the test process may not see.
            let arguments = [DBusDaemon.path, "--config-file=\(directory)/bus.conf", "--nofork", "--nopidfile", "--nosyslog"]
            let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
            defer { argv.forEach { free($0) } }
            // Only stdio: the daemon outlives this call and must not hold another test's pipe open.
            var actions = posix_spawn_file_actions_t()
            posix_spawn_file_actions_init(&actions)
            defer { posix_spawn_file_actions_destroy(&actions) }
            Subprocess.closeInheritedDescriptors(&actions)
            let err = posix_spawn(&pid, DBusDaemon.path, &actions, nil, argv, environ)
            guard err == 0 else { throw DBusError(.internal, "posix_spawn dbus-daemon: \(String(cString: strerror(err)))") }
            let deadline = Date().addingTimeInterval(10)
            while !FileManager.default.fileExists(atPath: socket) && Date() < deadline { usleep(5000) }
        }

        deinit {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            let deadline = Date().addingTimeInterval(10)
            while waitpid(pid, &status, WNOHANG) == 0 && Date() < deadline { usleep(5000) }
            try? FileManager.default.removeItem(atPath: directory)
        }
    }

    @Test func callsRepliesErrorsAndSignalsThroughARealBus() throws {
        let bus = try PrivateBus()
        let c = try DBusConnection.connect(path: bus.socket, bus: true, until: .after(seconds: 10))
        let name = try #require(c.uniqueName)
        #expect(name.hasPrefix(":"))
        // The bus announces our name to us: a signal addressed to this connection.
        let acquired = try c.nextSignal(until: .after(seconds: 5)) { $0.member == "NameAcquired" }
        #expect(acquired.body == [.string(name)])
        let names = try c.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                               member: "ListNames", until: .after(seconds: 5))
        guard case .array("s", let list)? = names.body.first else { Issue.record("ListNames: \(names.body)"); return }
        #expect(list.contains(.string(name)))
        // An error reply throws, with its name and a status code.
        do {
            try c.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                       member: "GetNameOwner", [.string("org.example.Nobody")], until: .after(seconds: 5))
            Issue.record("GetNameOwner of an absent name succeeded")
        } catch {
            #expect(error.name == "org.freedesktop.DBus.Error.NameHasNoOwner")
            #expect(error.code == .notFound)
        }
        // A method with a typed argument the daemon checks (a{sv} round trip through GetConnectionCredentials).
        let creds = try c.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                               member: "GetConnectionCredentials", [.string(name)], until: .after(seconds: 5))
        guard case .array("{sv}", let entries)? = creds.body.first else { Issue.record("credentials: \(creds.body)"); return }
        #expect(entries.contains(.dictEntry(.string("UnixUserID"), .variant(.uint32(geteuid())))))
    }

    @Test func aPeerThatNeverAnswersMeetsTheDeadline() throws {
        // A listener that accepts and says nothing: authentication must give up at the deadline.
        let dir = NSTemporaryDirectory() + "cocoon-dbus-silent-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let listener = try StreamSocket.listenUnix(path: dir + "/s")
        defer { listener.close() }
        let start = Date()
        #expect(throws: DBusError.self) { try DBusConnection.connect(path: dir + "/s", bus: false, until: .after(seconds: 0.5)) }
        #expect(Date().timeIntervalSince(start) < 5)
    }

    @Test func anAbsentSocketIsUnavailable() {
        do {
            _ = try DBusConnection.connect(path: "/nonexistent/cocoon-bus", bus: true, until: .after(seconds: 0.2))
            Issue.record("connected to nothing")
        } catch {
            #expect(error.code == .unavailable)
            #expect(error.message.contains("/nonexistent/cocoon-bus"))
        }
    }
}


enum DBusDaemon {
    static let path = "/usr/bin/dbus-daemon"
    static var skipReason: String? {
        FileManager.default.isExecutableFile(atPath: path) ? nil : "dbus-daemon is not installed (make deps installs dbus)"
    }
}
