#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import StatusCodes

// The first host <-> agent exchange: one JSON object per line, request/response with ids.
// [sandbox] replaces the framing with ttrpc on a mux channel; the operations stay.

public enum AgentMethod: String, Codable, Sendable {
    case health = "Health"
    case shutdown = "Shutdown"
}

public struct AgentRequest: Codable, Sendable, Equatable {
    public var id: UInt64
    public var method: String
    public init(id: UInt64, method: String) {
        self.id = id
        self.method = method
    }
}

/// The agent's health answer.
public struct HealthInfo: Codable, Sendable, Equatable {
    public var agentVersion: String
    public var kernelRelease: String
    public var uptimeSeconds: Double
    public var pid: Int32
    /// The agent's resident memory in the guest.
    public var agentRSSKiB: Int
    public var memoryTotalKiB: Int
    public init(agentVersion: String, kernelRelease: String, uptimeSeconds: Double, pid: Int32, agentRSSKiB: Int, memoryTotalKiB: Int) {
        self.agentVersion = agentVersion
        self.kernelRelease = kernelRelease
        self.uptimeSeconds = uptimeSeconds
        self.pid = pid
        self.agentRSSKiB = agentRSSKiB
        self.memoryTotalKiB = memoryTotalKiB
    }
}

public struct AgentStatus: Codable, Sendable, Equatable {
    public var code: Int32
    public var message: String
    public init(code: StatusCode, message: String) {
        self.code = code.rawValue
        self.message = message
    }
}

public struct AgentResponse: Codable, Sendable, Equatable {
    public var id: UInt64
    public var health: HealthInfo?
    public var error: AgentStatus?
    public init(id: UInt64, health: HealthInfo? = nil, error: AgentStatus? = nil) {
        self.id = id
        self.health = health
        self.error = error
    }
}

/// Newline-delimited JSON with a hard size limit: a peer cannot make the other side buffer without bound.
public struct LineFramer: Sendable {
    public static let maxLineBytes = 64 * 1024
    private var buffer: [UInt8] = []

    public init() {}

    public mutating func append(_ bytes: [UInt8]) { buffer += bytes }

    /// The next complete line, nil if none yet; throws when a line exceeds the limit.
    public mutating func nextLine() throws(AgentAPIError) -> [UInt8]? {
        if let newline = buffer.firstIndex(of: 0x0a) {
            guard newline <= Self.maxLineBytes else { throw .oversized(newline) }
            let line = Array(buffer[..<newline])
            buffer.removeSubrange(...newline)
            return line
        }
        if buffer.count > Self.maxLineBytes { throw .oversized(buffer.count) }
        return nil
    }

    public static func encode<T: Encodable>(_ value: T) throws(AgentAPIError) -> [UInt8] {
        do {
            var bytes = Array(try JSONEncoder().encode(value))
            bytes.append(0x0a)
            return bytes
        } catch {
            throw .malformed("cannot encode \(T.self): \(error)")
        }
    }

    public static func decode<T: Decodable>(_ type: T.Type, from line: [UInt8]) throws(AgentAPIError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(line))
        } catch {
            throw .malformed("not a valid \(T.self)")
        }
    }
}
