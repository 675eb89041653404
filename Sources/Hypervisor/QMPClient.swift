import Foundation
import Sockets
import SystemCalls

/// A QMP (QEMU Machine Protocol) client: one JSON object per line, commands answered in order,
/// asynchronous events interleaved (and skipped here).
public final class QMPClient: @unchecked Sendable {
    private let fd: FileDescriptor
    private let lock = NSLockLite()
    private var buffer: [UInt8] = []  // guarded by lock

    /// QMP messages are small; anything larger is a broken peer.
    static let maxMessageBytes = 1 << 20

    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    public static func connect(path: String, until deadline: Deadline) throws(HypervisorError) -> QMPClient {
        let fd: FileDescriptor
        do {
            fd = try StreamSocket.connectUnix(path: path, until: deadline)
        } catch {
            throw HypervisorError(.unavailable, "QMP socket \(path): \(error.message)")
        }
        let client = QMPClient(fd: fd)
        try client.lock.withLock { () throws(HypervisorError) in
            let greeting = try client.readMessage(until: deadline)
            guard greeting["QMP"] != nil else {
                throw HypervisorError(.internal, "QMP socket \(path): unexpected greeting")
            }
        }
        _ = try client.execute("qmp_capabilities", until: deadline)
        return client
    }

    init(fd: FileDescriptor) { self.fd = fd }

    public func close() { fd.close() }

    /// Runs a command and returns its "return" value.
    @discardableResult
    public func execute(_ command: String, arguments: [String: Any]? = nil, until deadline: Deadline) throws(HypervisorError) -> Any {
        try lock.withLock { () throws(HypervisorError) -> Any in
            var request: [String: Any] = ["execute": command]
            if let arguments { request["arguments"] = arguments }
            guard var bytes = try? JSONSerialization.data(withJSONObject: request) else {
                throw HypervisorError(.invalidArgument, "QMP \(command): arguments are not JSON")
            }
            bytes.append(0x0a)
            do throws(SystemError) {
                try fd.writeAll(Array(bytes), until: deadline)
            } catch {
                throw HypervisorError(.unavailable, "QMP \(command): \(error.message)")
            }
            while true {
                let message = try readMessage(until: deadline)
                if message["event"] != nil { continue }
                if let error = message["error"] as? [String: Any] {
                    throw HypervisorError(.internal, "QMP \(command): \(error["desc"] as? String ?? "error")")
                }
                if let value = message["return"] { return value }
            }
        }
    }

    /// `query-status`: "running", "paused", "shutdown", ...
    public func status(until deadline: Deadline) throws(HypervisorError) -> String {
        let value = try execute("query-status", until: deadline)
        return (value as? [String: Any])?["status"] as? String ?? "unknown"
    }

    private func readMessage(until deadline: Deadline) throws(HypervisorError) -> [String: Any] {
        while true {
            if let newline = buffer.firstIndex(of: 0x0a) {
                let line = Array(buffer[..<newline])
                buffer.removeSubrange(...newline)
                guard let object = try? JSONSerialization.jsonObject(with: Data(line)) as? [String: Any] else {
                    throw HypervisorError(.internal, "QMP: a reply is not a JSON object")
                }
                return object
            }
            guard buffer.count < Self.maxMessageBytes else {
                throw HypervisorError(.resourceExhausted, "QMP: a reply exceeds \(Self.maxMessageBytes) bytes")
            }
            let chunk: [UInt8]
            do throws(SystemError) {
                chunk = try fd.read(upTo: 65536, until: deadline)
            } catch {
                throw HypervisorError(error.code == .deadlineExceeded ? .deadlineExceeded : .unavailable, "QMP: \(error.message)")
            }
            if chunk.isEmpty { throw HypervisorError(.unavailable, "QMP: QEMU closed the connection") }
            buffer += chunk
        }
    }
}
