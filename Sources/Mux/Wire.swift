/// The mux's frame: a 10-byte big-endian header (channel id, kind, flags, payload length) and a payload.
///
/// - open:   payload is the channel's name (UTF-8, 1 to 255 bytes). Ids are chosen by the opener:
///           odd for the host, even for the guest, increasing, never reused.
/// - data:   payload is bytes of the stream, at most `maxData`, never more than the credit the
///           receiver has granted for that channel.
/// - window: payload is a 4-byte credit increment: the receiver has consumed that many bytes.
/// - close:  the sender will send no more data on the channel (the reader sees end of file).
/// - reset:  the sender gave up on the channel in both directions; payload is a UTF-8 reason.
///
/// Each side starts with `initialWindow` bytes of credit per channel. Anything else (an unknown
/// kind, flags set, a payload too long, data beyond credit, a frame for a channel never opened) is
/// a protocol violation and ends the whole connection: the peer may be a compromised guest.
public enum MuxWire {
    public static let headerSize = 10
    public static let maxData = 64 * 1024
    public static let maxNameLength = 255
    public static let initialWindow = 256 * 1024

    public enum Kind: UInt8, Sendable {
        case open = 1
        case data = 2
        case window = 3
        case close = 4
        case reset = 5
    }

    public static func header(channel: UInt32, kind: Kind, length: Int) -> [UInt8] {
        let l = UInt32(length)
        return [UInt8(channel >> 24), UInt8(channel >> 16 & 0xff), UInt8(channel >> 8 & 0xff), UInt8(channel & 0xff),
                kind.rawValue, 0,
                UInt8(l >> 24), UInt8(l >> 16 & 0xff), UInt8(l >> 8 & 0xff), UInt8(l & 0xff)]
    }

    static func u32(_ b: ArraySlice<UInt8>) -> UInt32 {
        let i = b.startIndex
        return UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    static func bytes(_ v: UInt32) -> [UInt8] {
        [UInt8(v >> 24), UInt8(v >> 16 & 0xff), UInt8(v >> 8 & 0xff), UInt8(v & 0xff)]
    }

    /// The largest payload a frame of this kind may carry.
    static func maxPayload(_ kind: Kind) -> Int {
        switch kind {
        case .open, .reset: maxNameLength
        case .data: maxData
        case .window: 4
        case .close: 0
        }
    }
}
