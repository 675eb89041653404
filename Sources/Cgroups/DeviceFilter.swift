import CSupport
import OCI
#if canImport(Glibc)
import Glibc
#endif

/// cgroup v2 has no devices controller: access to device nodes is decided by an eBPF program
/// attached to the cgroup. This one implements the OCI rules with cgroup v1's meaning: later rules
/// override earlier ones, and what no rule matches is denied.
public struct DeviceFilter: Equatable, Sendable {
    /// One eBPF instruction (struct bpf_insn).
    public struct Instruction: Equatable, Sendable {
        public var code: UInt8
        public var registers: UInt8  // dst in the low nibble, src in the high one
        public var offset: Int16
        public var immediate: Int32
    }

    public let instructions: [Instruction]

    // Opcodes (linux/bpf_common.h, linux/bpf.h).
    static let loadWord: UInt8 = 0x61      // BPF_LDX | BPF_MEM | BPF_W
    static let move32: UInt8 = 0xbc        // BPF_ALU | BPF_MOV | BPF_X
    static let and32: UInt8 = 0x54         // BPF_ALU | BPF_AND | BPF_K
    static let shiftRight32: UInt8 = 0x74  // BPF_ALU | BPF_RSH | BPF_K
    static let jumpNotEqual: UInt8 = 0x55  // BPF_JMP | BPF_JNE | BPF_K
    static let jumpEqual: UInt8 = 0x15     // BPF_JMP | BPF_JEQ | BPF_K
    static let move64Immediate: UInt8 = 0xb7
    static let exit: UInt8 = 0x95

    static func insn(_ code: UInt8, dst: UInt8 = 0, src: UInt8 = 0, off: Int16 = 0, imm: Int32 = 0) -> Instruction {
        Instruction(code: code, registers: dst | (src << 4), offset: off, immediate: imm)
    }

    /// Access bits of struct bpf_cgroup_dev_ctx.access_type >> 16.
    static func accessMask(_ access: String?) -> Int32 {
        let a = access ?? "rwm"
        return (a.contains("m") ? 1 : 0) | (a.contains("r") ? 2 : 0) | (a.contains("w") ? 4 : 0)
    }

    public init(rules: [DeviceCgroupRule]) {
        // r2 = type (1 block, 2 char), r3 = access, r4 = major, r5 = minor.
        var code: [Instruction] = [
            Self.insn(Self.loadWord, dst: 2, src: 1, off: 0),
            Self.insn(Self.move32, dst: 3, src: 2),
            Self.insn(Self.shiftRight32, dst: 3, imm: 16),
            Self.insn(Self.and32, dst: 2, imm: 0xffff),
            Self.insn(Self.loadWord, dst: 4, src: 1, off: 4),
            Self.insn(Self.loadWord, dst: 5, src: 1, off: 8),
        ]
        // The last matching rule decides, so test them from the last one, first match returning.
        for rule in rules.reversed() {
            var block: [Instruction] = []
            var jumps: [Int] = []  // indexes in block of "skip this rule" jumps
            switch rule.type ?? "a" {
            case "b": jumps.append(block.count); block.append(Self.insn(Self.jumpNotEqual, dst: 2, imm: 1))
            case "c": jumps.append(block.count); block.append(Self.insn(Self.jumpNotEqual, dst: 2, imm: 2))
            default: break
            }
            let mask = Self.accessMask(rule.access)
            block.append(Self.insn(Self.move32, dst: 6, src: 3))
            if rule.allow {
                // Allows when everything asked is within the rule's access.
                block.append(Self.insn(Self.and32, dst: 6, imm: ~mask & 0x7))
                jumps.append(block.count); block.append(Self.insn(Self.jumpNotEqual, dst: 6, imm: 0))
            } else {
                // Denies when anything asked is within the rule's access.
                block.append(Self.insn(Self.and32, dst: 6, imm: mask))
                jumps.append(block.count); block.append(Self.insn(Self.jumpEqual, dst: 6, imm: 0))
            }
            if let major = rule.major, major >= 0 {
                jumps.append(block.count); block.append(Self.insn(Self.jumpNotEqual, dst: 4, imm: Int32(truncatingIfNeeded: major)))
            }
            if let minor = rule.minor, minor >= 0 {
                jumps.append(block.count); block.append(Self.insn(Self.jumpNotEqual, dst: 5, imm: Int32(truncatingIfNeeded: minor)))
            }
            block.append(Self.insn(Self.move64Immediate, dst: 0, imm: rule.allow ? 1 : 0))
            block.append(Self.insn(Self.exit))
            for j in jumps { block[j].offset = Int16(block.count - j - 1) }
            code += block
        }
        code.append(Self.insn(Self.move64Immediate, dst: 0, imm: 0))
        code.append(Self.insn(Self.exit))
        instructions = code
    }

    /// Loads the program and attaches it to the cgroup directory.
    public func attach(to cgroupDirectory: String) throws(CgroupError) {
        var log = [CChar](repeating: 0, count: 16384)
        let program = instructions.withUnsafeBytes { bytes in
            cocoon_bpf_load_device_program(bytes.baseAddress, UInt32(instructions.count), &log, UInt32(log.count))
        }
        guard program >= 0 else {
            throw CgroupError(.internal, "linux.resources.devices: loading the device filter: \(String(cString: strerror(errno))) \(String(cString: log))")
        }
        defer { close(program) }
        let dir = open(cgroupDirectory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dir >= 0 else { throw CgroupError(.notFound, "linux.resources.devices: open \(cgroupDirectory): \(String(cString: strerror(errno)))") }
        defer { close(dir) }
        guard cocoon_bpf_attach_device_program(dir, program) == 0 else {
            throw CgroupError(.internal, "linux.resources.devices: attaching the device filter to \(cgroupDirectory): \(String(cString: strerror(errno)))")
        }
    }
}
