#!/usr/bin/env python3
"""Runs a test command with a time limit; a run that hangs fails with what it was doing.

    scripts/watchdog.py SECONDS COMMAND...

The command's output passes through unchanged. Past SECONDS it reads the test process's
threads, stops the command and everything it started, and prints last (where a CI log's tail
shows it): every thread's stack condensed to function names, threads with the same stack counted
together (through gdb; without it, each thread's name and kernel wait), then the tests that
started and did not end. Exits with the command's status (128 + N after signal N), or 124 after
a hang.
"""
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time

ANSI = re.compile(r'\x1b\[[0-9;]*m')  # colors, when the terminal has them
STARTED = re.compile(r'^◇ Test (?!case passing )(.+) started\.$')  # a parameterized test's cases start inside it
ENDED = re.compile(r'^(?:[✔✘] Test (.+?) (?:with \d+ test cases? )?(?:passed|failed) after [\d.]+ seconds|➜ Test (.+) skipped)')
FRAME = re.compile(r'^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+)')
THREAD = re.compile(r'^Thread \d+ \(Thread 0x[0-9a-f]+ \(LWP \d+\)(?: "([^"]*)")?\)')


def descendants(pid):
    """The process ids below `pid`, from /proc."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as stat:
                fields = stat.read().rsplit(')', 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
        except (OSError, IndexError, ValueError):
            continue
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def command_line(pid):
    try:
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return f.read().replace(b'\0', b' ').decode(errors='replace')
    except OSError:
        return ''


def demangle(names):
    """Swift's mangled names made readable, when swift-demangle is there."""
    tool = shutil.which('swift-demangle') or shutil.which('swift')
    if not tool or not names:
        return names
    args = [tool] if tool.endswith('swift-demangle') else [tool, 'demangle']
    try:
        out = subprocess.run(args + ['--simplified', '--compact'], input='\n'.join(names), capture_output=True,
                             text=True, timeout=60).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return names
    return out if len(out) == len(names) else names


def condensed(frames):
    """Without the C library's innermost internals (its names begin with _), one ?? for a run of
    unnamed frames (librdkafka's own functions), each line at most 140 characters."""
    start = 0
    while start < len(frames) - 1 and frames[start].startswith('_'):
        start += 1
    kept = []
    for frame in frames[start:]:
        if frame == '??' and kept and kept[-1] == '??':
            continue
        kept.append(frame[:140])
    return kept


def gdb_stacks(pid):
    """Each thread's name and function names, innermost first, read by gdb; or why not."""
    if not shutil.which('gdb'):
        return None, 'gdb is not installed'
    try:
        run = subprocess.run(['gdb', '-batch', '-nx', '-iex', 'set debuginfod enabled off', '-ex', 'set pagination off',
                              '-ex', 'thread apply all bt 40', '-p', str(pid)], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as error:
        return None, f'gdb failed: {error}'
    threads, current = [], None
    for line in run.stdout.splitlines():
        header = THREAD.match(line)
        if header:
            current = (header.group(1) or '?', [])
            threads.append(current)
            continue
        frame = FRAME.match(line)
        if frame and current is not None:
            current[1].append(frame.group(1))
    if not threads:
        why = [line for line in run.stderr.splitlines() if line.strip()]
        return None, 'gdb read no thread: ' + (why[-1] if why else f'exit {run.returncode}')
    names = sorted({name for _, frames in threads for name in frames})
    readable = dict(zip(names, demangle(names)))
    return [(name, condensed([readable[f] for f in frames])) for name, frames in threads], None


def kernel_waits(pid):
    """Without gdb: each thread's name and where the kernel has it wait (its state and wchan)."""
    threads = []
    for task in sorted(os.listdir(f'/proc/{pid}/task'), key=int):
        def read(name):
            try:
                with open(f'/proc/{pid}/task/{task}/{name}') as f:
                    return f.read().strip()
            except OSError:
                return '?'
        state = read('stat').rsplit(')', 1)[-1].split()[:1]
        threads.append((read('comm'), [f"state {state[0] if state else '?'}, waiting in {read('wchan') or '-'}"]))
    return threads


def ours(frames):
    """Whether a stack passes through the project's Swift code (not only C and system libraries)."""
    return any('(' in frame and not frame.startswith(('_dispatch', 'start_thread')) for frame in frames)


def stacks_text(pid):
    """The report's thread part: groups of threads with the same stack, ours last."""
    if pid is None:
        return ['  no test process found below the command\n']
    found, why = gdb_stacks(pid)
    lines = []
    if found is None:
        lines.append(f'  no stacks ({why}); the kernel\'s view instead:\n')
        try:
            found = kernel_waits(pid)
        except OSError as error:
            return lines + [f'  could not read /proc/{pid}/task: {error}\n']
    groups = {}
    for name, frames in found:
        groups.setdefault(tuple(frames[:16]), []).append(name)
    # Threads in the project's code last, nearest the list of tests.
    for frames, names in sorted(groups.items(), key=lambda item: (ours(item[0]), -len(item[1]))):
        counted = collections.Counter(names)
        lines.append('  ' + ', '.join(f'{n} ×{c}' if c > 1 else n for n, c in sorted(counted.items())) + ':\n')
        lines.extend(f'      {frame}\n' for frame in frames)
    return lines


def kill_group(process):
    """The command and everything it started (a test's child that outlived it holds the pipe)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main():
    if len(sys.argv) < 3:
        sys.exit('usage: watchdog.py SECONDS COMMAND...')
    limit = int(sys.argv[1])
    process = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

    def interrupted(number, _frame):
        kill_group(process)
        os._exit(128 + number)

    signal.signal(signal.SIGINT, interrupted)
    signal.signal(signal.SIGTERM, interrupted)

    running = collections.Counter()  # names repeat across suites
    lock = threading.Lock()

    def forward():
        for raw in process.stdout:
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
            line = ANSI.sub('', raw.decode(errors='replace').rstrip('\n'))
            started, ended = STARTED.match(line), ENDED.match(line)
            with lock:
                if started and started.group(1) != 'run':
                    running[started.group(1)] += 1
                elif ended:
                    name = ended.group(1) or ended.group(2)
                    if running[name] > 0:
                        running[name] -= 1

    reader = threading.Thread(target=forward, daemon=True)
    reader.start()
    deadline = time.monotonic() + limit
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
    if process.poll() is not None:
        reader.join(timeout=10)
        kill_group(process)
        status = process.returncode
        sys.exit(128 - status if status < 0 else status)

    tests = [pid for pid in [process.pid] + descendants(process.pid) if 'PackageTests' in command_line(pid)]
    pid = tests[0] if tests else None
    threads = stacks_text(pid)
    kill_group(process)
    process.wait()
    reader.join(timeout=10)
    with lock:
        still = sorted(name for name, count in running.items() if count > 0)
    out = sys.stdout
    out.write(f'\nwatchdog: the test run passed its limit of {limit} s; the threads of the test process '
              f'(process {pid}, threads with the same stack counted together), then the tests that started and did not end:\n')
    out.writelines(threads)
    out.write('watchdog: tests still running:\n')
    out.writelines(f'  {name}\n' for name in still)
    out.flush()
    sys.exit(124)


if __name__ == '__main__':
    main()
