import StatusCodes
import SystemCalls

/// The 10-byte big-endian frame header: payload length, stream id, message type, flags.
public struct MessageHeader: Equatable, Sendable {
    public static let size = 10
    /// Largest payload either side accepts or sends.
    public static let maxPayload = 4 << 20

    public enum Kind: UInt8, Sendable {
        case request = 1
        case response = 2
        case data = 3
    }

    public var length: UInt32
    public var streamID: UInt32
    /// Raw type byte: unknown types are skipped, not fatal, for forward compatibility.
    public var type: UInt8
    public var flags: UInt8

    public init(length: UInt32, streamID: UInt32, type: UInt8, flags: UInt8 = 0) {
        self.length = length
        self.streamID = streamID
        self.type = type
        self.flags = flags
    }

    public var kind: Kind? { Kind(rawValue: type) }

    public var bytes: [UInt8] {
        [UInt8(length >> 24), UInt8(length >> 16 & 0xff), UInt8(length >> 8 & 0xff), UInt8(length & 0xff),
         UInt8(streamID >> 24), UInt8(streamID >> 16 & 0xff), UInt8(streamID >> 8 & 0xff), UInt8(streamID & 0xff),
         type, flags]
    }

    public init(decoding b: ArraySlice<UInt8>) {
        let i = b.startIndex
        func u32(_ at: Int) -> UInt32 {
            UInt32(b[i + at]) << 24 | UInt32(b[i + at + 1]) << 16 | UInt32(b[i + at + 2]) << 8 | UInt32(b[i + at + 3])
        }
        self.init(length: u32(0), streamID: u32(4), type: b[i + 8], flags: b[i + 9])
    }
}

/// One frame read off the stream. A payload over the limit is skipped unread, and reported as such,
/// so the peer gets ResourceExhausted for that stream and the connection carries on.
enum Frame {
    case message(MessageHeader, [UInt8])
    case oversized(MessageHeader)
}

/// Reads frames from a stream with a bounded buffer: at most one chunk beyond one maximal frame.
final class FrameReader {
    private let stream: any ByteStream
    private var buffer: [UInt8] = []
    private var start = 0
    private static let chunk = 64 * 1024

    init(_ stream: any ByteStream) { self.stream = stream }

    private var available: Int { buffer.count - start }

    /// Reads until `count` bytes are buffered; false at a clean EOF before any byte of a frame.
    private func fill(_ count: Int, frameStarted: Bool) throws(TTRPCError) -> Bool {
        while available < count {
            if start > 0 {
                buffer.removeSubrange(0..<start)
                start = 0
            }
            let more: [UInt8]
            do {
                more = try stream.read(upTo: max(Self.chunk, count - available))
            } catch {
                throw TTRPCError(.unavailable, "ttrpc connection read failed: \(error)")
            }
            if more.isEmpty {
                if available == 0 && !frameStarted { return false }
                throw TTRPCError(.dataLoss, "ttrpc connection closed in the middle of a frame")
            }
            buffer.append(contentsOf: more)
        }
        return true
    }

    /// The next frame, or nil at a clean end of stream.
    func next() throws(TTRPCError) -> Frame? {
        guard try fill(MessageHeader.size, frameStarted: false) else { return nil }
        let header = MessageHeader(decoding: buffer[start..<start + MessageHeader.size])
        start += MessageHeader.size
        let length = Int(header.length)
        if length > MessageHeader.maxPayload {
            var left = length
            while left > 0 {
                if available == 0 { _ = try fill(1, frameStarted: true) }
                let n = min(left, available)
                start += n
                left -= n
            }
            return .oversized(header)
        }
        _ = try fill(length, frameStarted: true)
        let payload = Array(buffer[start..<start + length])
        start += length
        return .message(header, payload)
    }
}

/// Writes whole frames; one lock so concurrent responses never interleave.
final class FrameWriter: @unchecked Sendable {
    private let stream: any ByteStream
    private let lock = NSLockLite()

    init(_ stream: any ByteStream) { self.stream = stream }

    func send(streamID: UInt32, kind: MessageHeader.Kind, flags: UInt8 = 0, payload: [UInt8]) throws(TTRPCError) {
        guard payload.count <= MessageHeader.maxPayload else {
            throw TTRPCError(.resourceExhausted,
                             "message length \(payload.count) exceeds the maximum message size of \(MessageHeader.maxPayload)")
        }
        let header = MessageHeader(length: UInt32(payload.count), streamID: streamID, type: kind.rawValue, flags: flags)
        let frame = header.bytes + payload
        do {
            try lock.withLock { try stream.write(frame) }
        } catch {
            throw TTRPCError(.unavailable, "ttrpc connection write failed: \(error)")
        }
    }
}
