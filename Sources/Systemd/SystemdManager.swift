import DBus
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// systemd's manager API over D-Bus: transient scope units for containers, their properties, their end.
/// Root talks to systemd's private socket (no bus daemon in the way, as runc does); others use the
/// system bus.
public final class SystemdManager {
    static let destination = "org.freedesktop.systemd1"
    static let objectPath = "/org/freedesktop/systemd1"
    static let interface = "org.freedesktop.systemd1.Manager"

    let connection: DBusConnection
    let isBus: Bool
    /// Each call and each job wait gets this long; systemd answers in milliseconds unless it is stuck.
    let timeout: Double

    /// Connects to the host's systemd (its sockets under `runDirectory`).
    public init(runDirectory: String = "/run", timeout: Double = 15) throws(SystemdError) {
        self.timeout = timeout
        guard Files.exists(runDirectory + "/systemd/system") else {
            throw SystemdError(.failedPrecondition,
                "--systemd-cgroup: systemd is not running on this host (no \(runDirectory)/systemd/system); drop the flag and use cgroupfs paths")
        }
        let privateSocket = runDirectory + "/systemd/private"
        var busSocket = runDirectory + "/dbus/system_bus_socket"
        if runDirectory == "/run", let address = getenv("DBUS_SYSTEM_BUS_ADDRESS").map({ String(cString: $0) }),
           let path = Self.unixPath(fromAddress: address) {
            busSocket = path
        }
        let deadline = Deadline.after(seconds: timeout)
        do {
            if geteuid() == 0 && Files.exists(privateSocket) {
                connection = try DBusConnection.connect(path: privateSocket, bus: false, until: deadline)
                isBus = false
            } else {
                connection = try DBusConnection.connect(path: busSocket, bus: true, until: deadline)
                isBus = true
            }
            if isBus {
                try connection.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus",
                                    member: "AddMatch",
                                    [.string("type='signal',sender='\(Self.destination)',interface='\(Self.interface)',member='JobRemoved'")],
                                    until: deadline)
            }
            // systemd emits job signals only to clients that subscribed.
            try managerCall("Subscribe", [], until: deadline)
        } catch {
            throw SystemdError(error.code, "--systemd-cgroup: cannot reach systemd: \(error.message)")
        }
    }

    /// `unix:path=/x,guid=...` → `/x`; other transports are not for a local root process.
    static func unixPath(fromAddress address: String) -> String? {
        for entry in address.split(separator: ";") where entry.hasPrefix("unix:") {
            for kv in entry.dropFirst(5).split(separator: ",") where kv.hasPrefix("path=") {
                return String(kv.dropFirst(5))
            }
        }
        return nil
    }

    @discardableResult
    func managerCall(_ member: String, _ body: [DBusValue], until deadline: Deadline) throws(DBusError) -> DBusMessage {
        try connection.call(destination: isBus ? Self.destination : nil, path: Self.objectPath, interface: Self.interface,
                            member: member, body, until: deadline)
    }

    /// Starts `unit` (a scope) in `slice` holding `pid`, delegated (the container may manage its own
    /// subtree), and waits for systemd to finish the job.
    public func startScope(_ unit: String, slice: String, pid: Int32, description: String,
                           properties: [(String, DBusValue)]) throws(SystemdError) {
        let all: [(String, DBusValue)] = [
            ("Description", .string(description)),
            ("Slice", .string(slice)),
            ("Delegate", .boolean(true)),
            ("DefaultDependencies", .boolean(false)),
            ("PIDs", .array(element: "u", [.uint32(UInt32(pid))])),
        ] + properties
        let deadline = Deadline.after(seconds: timeout)
        let reply: DBusMessage
        do {
            reply = try managerCall("StartTransientUnit",
                                    [.string(unit), .string("fail"), DBusValue.properties(all), .array(element: "(sa(sv))", [])],
                                    until: deadline)
        } catch where error.code == .alreadyExists {
            throw SystemdError(.alreadyExists, "systemd unit \(unit) already exists: another container uses this cgroupsPath")
        } catch {
            throw SystemdError(error.code, "start systemd unit \(unit): \(error.message)")
        }
        try waitForJob(reply, unit: unit, action: "start", until: deadline)
    }

    /// Stops the unit (systemd kills what is left in it and removes its cgroups) and forgets a failed state,
    /// so the name can be used again. A unit that is already gone is not an error.
    public func stopUnit(_ unit: String) throws(SystemdError) {
        let deadline = Deadline.after(seconds: timeout)
        defer { _ = try? managerCall("ResetFailedUnit", [.string(unit)], until: deadline) }
        let reply: DBusMessage
        do { reply = try managerCall("StopUnit", [.string(unit), .string("replace")], until: deadline) } catch {
            if error.code == .notFound { return }
            throw SystemdError(error.code, "stop systemd unit \(unit): \(error.message)")
        }
        try waitForJob(reply, unit: unit, action: "stop", until: deadline)
    }

    /// Changes a running unit's properties (runtime only: nothing is written under /etc).
    public func setProperties(_ unit: String, _ properties: [(String, DBusValue)]) throws(SystemdError) {
        guard !properties.isEmpty else { return }
        do {
            try managerCall("SetUnitProperties", [.string(unit), .boolean(true), DBusValue.properties(properties)],
                            until: .after(seconds: timeout))
        } catch {
            throw SystemdError(error.code, "set properties of systemd unit \(unit): \(error.message)")
        }
    }

    private func waitForJob(_ reply: DBusMessage, unit: String, action: String, until deadline: Deadline) throws(SystemdError) {
        guard case .objectPath(let job)? = reply.body.first else {
            throw SystemdError(.internal, "\(action) systemd unit \(unit): reply without a job path")
        }
        let done: DBusMessage
        do {
            done = try connection.nextSignal(until: deadline) { m in
                m.member == "JobRemoved" && m.interface == Self.interface && m.body.count == 4 && m.body[1] == .objectPath(job)
            }
        } catch {
            throw SystemdError(error.code, "\(action) systemd unit \(unit): waiting for job \(job): \(error.message)")
        }
        let result = done.body[3].string ?? ""
        guard result == "done" else {
            throw SystemdError(.failedPrecondition, "\(action) systemd unit \(unit): job ended '\(result)' (see the host's journal for \(unit))")
        }
    }
}
