#!/usr/bin/env python3
"""SASS with each instruction's scheduling controls: which dependency scoreboards it waits for and which it sets.

Why: a warp issues in order, and the hardware tracks a variable-latency result (a global or shared-memory load, a
MUFU, an R2UR) on one of six scoreboards per warp. ptxas picks the scoreboard, and when more results are outstanding
than there are scoreboards, it puts several on one. An instruction that waits for that scoreboard then waits for all
of them. Run 99 (kernels/notes/runs-91-.md) found the persistent decode's warps stalled ~2 us per layer this way,
behind its next-layer loads. ncu reports such a stall as long_sb at the waiting instruction; this shows the cause.

The controls are the top 23 bits of each 128-bit sm_70+ instruction:
  stall cycles (4 bits) | yield (1) | write scoreboard set (3; 7 = none) | read scoreboard set (3; 7 = none) |
  wait mask (6: one bit per scoreboard) | operand reuse (4).
Usage (any nvdisasm that knows the architecture; the GPU machine's CUDA has one):
  nvcc ... -cubin -o k.cubin file.cu && nvdisasm -c -hex k.cubin > k.sass && python3 kernels/dev/sass_ctrl.py k.sass
Output: address, instruction, wait{scoreboards} W<set> R<set>, stall cycles. Branch labels are kept.
  python3 kernels/dev/sass_ctrl.py --summary k.sass: per kernel, the instruction count, the calls to 64-bit
  division / remainder and to float-division slow paths, and the instructions that wait on 3 or more scoreboards
  (a merge point after such a call waits for every load in flight).
"""
import re
import sys

INSTRUCTION = re.compile(r'/\*([0-9a-f]{4,})\*/\s+(.*?)\s*;?\s+/\* (0x[0-9a-f]{16}) \*/')
HIGH_WORD = re.compile(r'/\* (0x[0-9a-f]{16}) \*/')


def controls(high_word):
    ctrl = high_word >> 41
    return {
        'stall': ctrl & 15,
        'yield': (ctrl >> 4) & 1,
        'write': (ctrl >> 5) & 7,
        'read': (ctrl >> 8) & 7,
        'wait': (ctrl >> 11) & 63,
        'reuse': (ctrl >> 17) & 15,
    }


def annotate(lines):
    i = 0
    while i < len(lines):
        m = INSTRUCTION.search(lines[i])
        if m and i + 1 < len(lines) and HIGH_WORD.search(lines[i + 1]):
            c = controls(int(HIGH_WORD.search(lines[i + 1]).group(1), 16))
            tags = []
            if c['wait']:
                tags.append('wait{' + ''.join(str(k) for k in range(6) if c['wait'] >> k & 1) + '}')
            if c['write'] != 7:
                tags.append(f"W{c['write']}")
            if c['read'] != 7:
                tags.append(f"R{c['read']}")
            yield f"{m.group(1)} {m.group(2).rstrip(';').strip()[:72]:72s} {' '.join(tags):20s} s{c['stall']}"
            i += 2
            continue
        label = lines[i].strip()
        if label.startswith('.L_x'):
            yield label
        i += 1


def summary(lines):
    kernel, stats = None, {}
    for line in lines:
        if '.section\t.text.' in line:
            kernel = line.split('.text.')[1].split(',')[0]
            stats[kernel] = {'instructions': 0, 'div64 calls': 0, 'fdiv slow paths': 0, 'waits on >= 3': 0}
    kernel = None
    for line in lines:
        if '.section\t.text.' in line:
            kernel = line.split('.text.')[1].split(',')[0]
        m = INSTRUCTION.search(line)
        if not m or kernel is None:
            continue
        st, ins = stats[kernel], m.group(2)
        st['instructions'] += 1
        if 'CALL' in ins and re.search(r'(div|rem)_[su]64', ins):
            st['div64 calls'] += 1
        if 'CALL' in ins and 'slowpath' in ins:
            st['fdiv slow paths'] += 1
    for kernel, st in stats.items():
        print(kernel[:100], ' '.join(f'{k} {v}' for k, v in st.items() if k != 'waits on >= 3'), end='')
        print(f" waits on >= 3 {sum(1 for l in annotate_kernel(lines, kernel) if re.search(r'wait{[0-5]{3,}}', l))}")


def annotate_kernel(lines, kernel):
    start = next(i for i, l in enumerate(lines) if '.section\t.text.' in l and kernel in l)
    end = next((i for i in range(start + 1, len(lines)) if '.section\t.text.' in lines[i]), len(lines))
    return annotate(lines[start:end])


if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if a != '--summary']
    if len(args) != 1:
        sys.exit(__doc__)
    text = open(args[0]).read().splitlines()
    if '--summary' in sys.argv:
        summary(text)
    else:
        for line in annotate(text):
            print(line)
