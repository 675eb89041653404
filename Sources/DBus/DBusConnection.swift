import Sockets
import StatusCodes
import SystemCalls
#if canImport(Glibc)
import Glibc
#endif

/// A client connection to a D-Bus peer over a unix socket: the bus daemon, or systemd's private socket.
/// One thread uses it at a time; every wait has a deadline.
public final class DBusConnection {
    let socket: FileDescriptor
    private var serial: UInt32 = 0
    private var buffer: [UInt8] = []
    /// Signals that arrived while a reply was awaited, kept for `nextSignal`.
    private var queuedSignals: [DBusMessage] = []
    /// Whether the peer has answered anything yet (see `call`).
    private var started = false
    /// The name the bus daemon gave this connection (nil on a peer-to-peer connection).
    public private(set) var uniqueName: String?

    init(socket: FileDescriptor) { self.socket = socket }

    deinit { socket.close() }

    /// Connects and authenticates (SASL EXTERNAL: the kernel vouches for our uid). `bus` says the peer is a
    /// bus daemon, which needs a Hello before anything else; systemd's private socket is peer-to-peer.
    public static func connect(path: String, bus: Bool, until deadline: Deadline) throws(DBusError) -> DBusConnection {
        // connectUnix waits for a listener to appear; a bus that is not there is not worth waiting for.
        guard Files.exists(path) else { throw DBusError(.unavailable, "D-Bus \(path): no such socket") }
        let fd: FileDescriptor
        do { fd = try StreamSocket.connectUnix(path: path, until: deadline) } catch {
            throw DBusError(error.code == .notFound ? .unavailable : error.code, "D-Bus \(path): \(error.message)")
        }
        let connection = DBusConnection(socket: fd)
        try connection.authenticate(path: path, until: deadline)
        if bus {
            let reply = try connection.call(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus",
                                            interface: "org.freedesktop.DBus", member: "Hello", until: deadline)
            connection.uniqueName = reply.body.first?.string
        }
        return connection
    }

    private func authenticate(path: String, until deadline: Deadline) throws(DBusError) {
        let uid = String(geteuid())
        let hexUID = uid.utf8.map { String($0, radix: 16) }.joined()
        try send(bytes: [0] + Array("AUTH EXTERNAL \(hexUID)\r\n".utf8), until: deadline)
        let line = try readLine(until: deadline)
        guard line.hasPrefix("OK ") else {
            throw DBusError(.unauthenticated, "D-Bus \(path) refused authentication as uid \(uid): '\(line)'")
        }
        try send(bytes: Array("BEGIN\r\n".utf8), until: deadline)
    }

    private func readLine(until deadline: Deadline) throws(DBusError) -> String {
        while true {
            if let end = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = buffer[..<end]
                buffer.removeSubrange(...end)
                return String(decoding: line, as: UTF8.self).trimmingSuffix("\r")
            }
            guard buffer.count < 1024 else { throw DBusError(.dataLoss, "D-Bus authentication line longer than 1 KiB") }
            try fill(until: deadline)
        }
    }

    private func fill(until deadline: Deadline) throws(DBusError) {
        let chunk: [UInt8]
        do { chunk = try socket.read(upTo: 65536, until: deadline) } catch {
            throw DBusError(error.errno == ETIMEDOUT ? .deadlineExceeded : .unavailable, "D-Bus: \(error.message)")
        }
        guard !chunk.isEmpty else { throw DBusError(.unavailable, "D-Bus peer closed the connection") }
        buffer += chunk
    }

    private func send(bytes: [UInt8], until deadline: Deadline) throws(DBusError) {
        do { try socket.writeAll(bytes, until: deadline) } catch {
            throw DBusError(error.errno == ETIMEDOUT ? .deadlineExceeded : .unavailable, "D-Bus: \(error.message)")
        }
    }

    /// The next whole message from the peer.
    func receive(until deadline: Deadline) throws(DBusError) -> DBusMessage {
        while buffer.count < DBusMessage.fixedHeaderLength { try fill(until: deadline) }
        let total = try DBusMessage.totalLength(fixedHeader: buffer.prefix(DBusMessage.fixedHeaderLength))
        while buffer.count < total { try fill(until: deadline) }
        let bytes = Array(buffer[..<total])
        buffer.removeSubrange(..<total)
        return try DBusMessage.decode(bytes)
    }

    /// Sends a message, giving it the next serial; returns that serial.
    @discardableResult
    public func send(_ message: DBusMessage, until deadline: Deadline) throws(DBusError) -> UInt32 {
        var m = message
        serial &+= 1
        if serial == 0 { serial = 1 }
        m.serial = serial
        try send(bytes: try m.encode(), until: deadline)
        return m.serial
    }

    /// Calls a method and waits for its reply. An error reply throws, with its D-Bus error name kept.
    @discardableResult
    public func call(destination: String?, path: String, interface: String, member: String,
                     _ body: [DBusValue] = [], until deadline: Deadline) throws(DBusError) -> DBusMessage {
        let sent = try send(DBusMessage(kind: .methodCall, path: path, interface: interface, member: member,
                                        destination: destination, body: body), until: deadline)
        while true {
            let m: DBusMessage
            do {
                if !started {
                    // systemd's sd-bus (252 seen here) may leave the first message that arrives together with
                    // BEGIN unread until more input wakes it up: if the first reply is slow, a Ping does that.
                    do {
                        m = try receive(until: min(deadline, .after(seconds: 0.2)))
                    } catch where error.code == .deadlineExceeded && !deadline.hasPassed {
                        started = true
                        try send(DBusMessage(kind: .methodCall, path: "/", interface: "org.freedesktop.DBus.Peer", member: "Ping",
                                             destination: destination), until: deadline)
                        continue
                    }
                    started = true
                } else {
                    m = try receive(until: deadline)
                }
            } catch where error.code == .deadlineExceeded {
                throw DBusError(.deadlineExceeded, "D-Bus \(interface).\(member): no reply before the deadline")
            }
            switch m.kind {
            case .signal:
                queuedSignals.append(m)
            case .methodReturn where m.replySerial == sent:
                return m
            case .error where m.replySerial == sent:
                let name = m.errorName ?? "unknown"
                throw DBusError(Self.code(forErrorName: name), "\(interface).\(member): \(m.errorText.isEmpty ? name : m.errorText)",
                                name: name)
            case .methodCall where m.flags & 0x1 == 0:
                // Peers may call us (the bus daemon's Peer interface); this client exports nothing.
                var refusal = DBusMessage(kind: .error, destination: m.sender, body: [.string("cocoon exports no objects")])
                refusal.errorName = "org.freedesktop.DBus.Error.UnknownMethod"
                refusal.replySerial = m.serial
                try send(refusal, until: deadline)
            default:
                continue
            }
        }
    }

    /// Waits for a signal that `matches`; signals that do not match are dropped.
    public func nextSignal(until deadline: Deadline, matching matches: (DBusMessage) -> Bool) throws(DBusError) -> DBusMessage {
        while true {
            if let i = queuedSignals.firstIndex(where: matches) {
                let m = queuedSignals.remove(at: i)
                queuedSignals.removeSubrange(..<i)
                return m
            }
            queuedSignals.removeAll()
            let m = try receive(until: deadline)
            if m.kind == .signal { queuedSignals.append(m) }
        }
    }

    /// gRPC status for the error names cocoon's callers may need to tell apart.
    static func code(forErrorName name: String) -> StatusCode {
        let last = name.split(separator: ".").last.map(String.init) ?? name
        switch last {
        case "NoSuchUnit", "UnknownObject", "ServiceUnknown", "NameHasNoOwner", "FileNotFound": return .notFound
        case "UnknownMethod", "UnknownInterface", "UnknownProperty", "NotSupported": return .unimplemented
        case "AccessDenied", "AuthFailed": return .permissionDenied
        case "InvalidArgs", "InvalidSignature": return .invalidArgument
        case "UnitExists": return .alreadyExists
        case "NoReply", "Timeout", "TimedOut": return .deadlineExceeded
        case "LimitsExceeded", "NoMemory": return .resourceExhausted
        default: return .unknown
        }
    }
}

extension String {
    func trimmingSuffix(_ suffix: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) : self
    }
}
