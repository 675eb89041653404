import CSupport
import Foundation
import SystemCalls

/// Foreground `run` of a container with a terminal: cocoon holds the pty master and copies between it
/// and its own stdin/stdout, as `runc run` does for `-t`.
struct TerminalRelay {
    let master: Int32

    /// Receives the master from the init over our end of the console socket pair.
    static func receive(on socket: Int32, until deadline: Deadline) throws -> TerminalRelay {
        guard try Poll.wait(for: [socket], events: Int16(POLLIN), until: deadline) != nil else {
            throw CLIError("the container did not send its terminal in time")
        }
        var name = [CChar](repeating: 0, count: 256)
        let fd = cocoon_recv_fd(socket, &name, name.count)
        guard fd >= 0 else { throw CLIError("receiving the container's terminal: \(String(cString: strerror(errno)))") }
        return TerminalRelay(master: fd)
    }

    /// Relays until the container exits; returns its exit status. Signals other than SIGWINCH go
    /// to the container.
    func run(exitFD: Int32, signalFD: Int32, onSignal: (Int32) -> Void, exited: () -> Int32?) throws -> Int32 {
        let interactive = isatty(0) == 1
        if interactive {
            _ = cocoon_make_raw(0)
            _ = cocoon_copy_winsize(0, master)
        }
        defer { if interactive { cocoon_restore_terminal() } }
        var stdinOpen = true
        var masterOpen = true
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var fds: [Int32] = [exitFD, signalFD]
            if masterOpen { fds.append(master) }
            if stdinOpen { fds.append(0) }
            guard let ready = try Poll.wait(for: fds, events: Int16(POLLIN), until: .after(seconds: 3600)) else { continue }
            switch fds[ready] {
            case exitFD:
                if let status = exited() {
                    drainMaster(&buffer)
                    return status
                }
            case signalFD:
                let sig = cocoon_signalfd_read(signalFD)
                if sig == SIGWINCH { if interactive { _ = cocoon_copy_winsize(0, master) } } else if sig > 0 { onSignal(sig) }
            case master:
                let n = read(master, &buffer, buffer.count)
                if n <= 0 { masterOpen = false; continue }  // EIO: every slave fd is closed
                writeAll(1, buffer, n)
            default:
                let n = read(0, &buffer, buffer.count)
                if n <= 0 {
                    stdinOpen = false
                    // End of input: what ^D means to the program on the other side of the terminal.
                    if !interactive { var eot: UInt8 = 4; _ = write(master, &eot, 1) }
                    continue
                }
                writeAll(master, buffer, n)
            }
        }
    }

    private func drainMaster(_ buffer: inout [UInt8]) {
        let flags = cocoon_fcntl_getfl(master)
        _ = cocoon_fcntl_setfl(master, flags | O_NONBLOCK)
        while true {
            let n = read(master, &buffer, buffer.count)
            if n <= 0 { break }
            writeAll(1, buffer, n)
        }
    }

    private func writeAll(_ fd: Int32, _ buffer: [UInt8], _ count: Int) {
        var offset = 0
        while offset < count {
            let n = buffer.withUnsafeBytes { write(fd, $0.baseAddress! + offset, count - offset) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            offset += n
        }
    }
}
