import StatusCodes
import SystemCalls

/// The host side: sends one request at a time and waits for its answer with a deadline.
/// Nothing the guest sends is trusted: sizes are bounded and ids must match.
public final class AgentClient: @unchecked Sendable {
    private let fd: FileDescriptor
    private let lock = NSLockLite()
    private var framer = LineFramer()  // guarded by lock
    private var nextID: UInt64 = 1     // guarded by lock

    public init(fd: FileDescriptor) { self.fd = fd }

    public func close() { fd.close() }

    public func health(until deadline: Deadline) throws(AgentAPIError) -> HealthInfo {
        let response = try call(.health, until: deadline)
        guard let health = response.health else { throw .malformed("Health answer without health") }
        return health
    }

    /// Asks the agent to power the guest off; it answers first, then reboots (QEMU exits).
    public func shutdown(until deadline: Deadline) throws(AgentAPIError) {
        _ = try call(.shutdown, until: deadline)
    }

    private func call(_ method: AgentMethod, until deadline: Deadline) throws(AgentAPIError) -> AgentResponse {
        try lock.withLock { () throws(AgentAPIError) -> AgentResponse in
            let id = nextID
            nextID += 1
            let request = try LineFramer.encode(AgentRequest(id: id, method: method.rawValue))
            do throws(SystemError) {
                try fd.writeAll(request, until: deadline)
            } catch {
                if error.code == .deadlineExceeded { throw .timedOut(method.rawValue) }
                throw .transport(error.message)
            }
            while true {
                if let line = try framer.nextLine() {
                    let response = try LineFramer.decode(AgentResponse.self, from: line)
                    guard response.id == id else { throw .malformed("answer id \(response.id), expected \(id)") }
                    if let error = response.error {
                        throw .remote(code: StatusCode(rawValue: error.code) ?? .unknown, message: error.message)
                    }
                    return response
                }
                let chunk: [UInt8]
                do throws(SystemError) {
                    chunk = try fd.read(upTo: 65536, until: deadline)
                } catch {
                    if error.code == .deadlineExceeded { throw .timedOut(method.rawValue) }
                    throw .transport(error.message)
                }
                if chunk.isEmpty { throw .closed }
                framer.append(chunk)
            }
        }
    }
}
