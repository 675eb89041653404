import AgentAPI
import Foundation
import SwiftProtobuf
import Testing

/// The agent API's messages survive the wire, including the fields a peer may not know yet.
@Suite struct ProtoRoundTripTests {
    func roundTrip<M: SwiftProtobuf.Message & Equatable>(_ m: M) throws -> M {
        let bytes: [UInt8] = try m.serializedBytes()
        return try M(serializedBytes: bytes)
    }

    @Test func containerRequests() throws {
        let create = Cocoon_Agent_V1_CreateContainerRequest.with {
            $0.containerID = "c1"
            $0.ociSpecJson = Data("{\"ociVersion\":\"1.2.0\"}".utf8)
            $0.rootfsPath = "/run/cocoon/shared/c1/rootfs"
            $0.storages = [.with { $0.fstype = "virtiofs"; $0.source = "cocoon"; $0.mountPoint = "/run/cocoon/shared"; $0.options = ["ro"] }]
            $0.stdio = .with { $0.stdin = "stdin/c1/init/1"; $0.stdout = "stdout/c1/init/1"; $0.terminal = true }
        }
        #expect(try roundTrip(create) == create)
        let signal = Cocoon_Agent_V1_SignalProcessRequest.with { $0.containerID = "c1"; $0.execID = "e"; $0.signal = 15; $0.all = true }
        #expect(try roundTrip(signal) == signal)
        let resize = Cocoon_Agent_V1_ResizeTTYRequest.with { $0.containerID = "c1"; $0.rows = 50; $0.columns = 132 }
        #expect(try roundTrip(resize) == resize)
        let stats = Cocoon_Agent_V1_StatsResponse.with { $0.memoryUsageBytes = 1 << 40; $0.pidsLimit = 99 }
        #expect(try roundTrip(stats) == stats)
        let wait = Cocoon_Agent_V1_WaitProcessResponse.with { $0.exitStatus = 137 }
        #expect(try roundTrip(wait) == wait)
    }

    @Test func unknownFieldsAreKeptNotRefused() throws {
        // A newer host may send a field this agent does not know (field 99, varint 1): decoding still works.
        var bytes: [UInt8] = try Cocoon_Agent_V1_ContainerRequest.with { $0.containerID = "c1" }.serializedBytes()
        bytes += [0xF8, 0x06, 0x01]
        let decoded = try Cocoon_Agent_V1_ContainerRequest(serializedBytes: bytes)
        #expect(decoded.containerID == "c1")
        #expect(!decoded.unknownFields.data.isEmpty)
    }

    @Test func truncatedMessagesAreErrors() throws {
        let bytes: [UInt8] = try Cocoon_Agent_V1_ContainerRequest.with { $0.containerID = "a-long-container-id" }.serializedBytes()
        #expect(throws: (any Error).self) { try Cocoon_Agent_V1_ContainerRequest(serializedBytes: Array(bytes.dropLast(3))) }
    }
}
