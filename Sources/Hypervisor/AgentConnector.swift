import AgentAPI
import Foundation
import Sockets
import SystemCalls

/// The host end of the agent channel. For virtio-serial the host listens before QEMU starts
/// (QEMU connects as a client); for vsock the host connects once the guest listens.
public final class AgentConnector: @unchecked Sendable {
    public let transport: ChannelTransport
    private let listener: FileDescriptor?

    public init(transport: ChannelTransport) throws(HypervisorError) {
        self.transport = transport
        switch transport {
        case .serial(let path):
            do throws(SystemError) {
                listener = try StreamSocket.listenUnix(path: path, backlog: 1)
            } catch {
                throw HypervisorError(.internal, "agent channel socket \(path): \(error.message)")
            }
        case .vsock:
            listener = nil
        }
    }

    /// Returns the byte stream to the agent, failing early when QEMU exits and at the deadline.
    public func connect(to vm: VirtualMachine, until deadline: Deadline) throws(HypervisorError) -> FileDescriptor {
        switch transport {
        case .serial(let path):
            guard let listener else { throw HypervisorError(.internal, "agent channel listener is gone") }
            // Wait for QEMU's connection, or for QEMU to die, whichever comes first.
            let ready: Int?
            do throws(SystemError) {
                ready = try Poll.wait(for: [listener.rawValue, vm.process.exitDescriptor], events: Int16(POLLIN), until: deadline)
            } catch {
                throw HypervisorError(.internal, "waiting for QEMU on \(path): \(error.message)")
            }
            if ready == 1, let t = vm.exited { throw vm.unexpectedExitError(t, while: "connecting the agent channel") }
            guard ready == 0 else {
                throw HypervisorError(.deadlineExceeded, "QEMU did not connect to \(path) in time", consoleTail: vm.consoleTail())
            }
            do throws(SystemError) {
                let fd = try StreamSocket.accept(listener, until: deadline)
                listener.close()
                return fd
            } catch {
                throw HypervisorError(.internal, "accept on \(path): \(error.message)")
            }
        case .vsock(let cid):
            while true {
                if let t = vm.exited { throw vm.unexpectedExitError(t, while: "connecting to the agent over vsock") }
                if deadline.hasPassed {
                    throw HypervisorError(.deadlineExceeded, "the agent did not listen on vsock \(cid):\(AgentChannel.vsockPort) in time",
                                          consoleTail: vm.consoleTail())
                }
                if let fd = try? StreamSocket.connectVsock(cid: cid, port: AgentChannel.vsockPort, until: .after(seconds: 0.2)) {
                    return fd
                }
            }
        }
    }

    public func close() { listener?.close() }
}
