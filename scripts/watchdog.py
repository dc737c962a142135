#!/usr/bin/env python3
"""Runs a test command with a time limit; a run that hangs fails with what it was doing.

    scripts/watchdog.py SECONDS COMMAND...

The command's output passes through unchanged. Past SECONDS it stops the command and prints,
last (where a CI log's tail shows it): the tests that started and did not end, and every
thread of the test process, its stack condensed to the function names and threads with the
same stack counted together (through gdb, when it is there). Exits with the command's status,
or 124 after a hang.
"""
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


FRAME = re.compile(r'^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+)')
THREAD = re.compile(r'^Thread \d+ \(Thread 0x[0-9a-f]+ \(LWP \d+\)(?: "([^"]*)")?\)')


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


def stacks(pid):
    """Each thread's name and function names, innermost first, read by gdb."""
    if not shutil.which('gdb'):
        return None
    try:
        out = subprocess.run(['gdb', '-batch', '-nx', '-ex', 'set pagination off', '-ex', 'thread apply all bt 40', '-p', str(pid)],
                             capture_output=True, text=True, timeout=300).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    threads, current = [], None
    for line in out.splitlines():
        header = THREAD.match(line)
        if header:
            current = [header.group(1) or '?', []]
            threads.append(current)
            continue
        frame = FRAME.match(line)
        if frame and current is not None:
            current[1].append(frame.group(1))
    names = sorted({name for _, frames in threads for name in frames})
    readable = dict(zip(names, demangle(names)))
    return [(name, condensed([readable[f] for f in frames])) for name, frames in threads]


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


def ours(frames):
    """Whether a stack passes through the project's Swift code (not only C and system libraries)."""
    return any('(' in frame and not frame.startswith(('_dispatch', 'start_thread')) for frame in frames)

def report(pid, running, limit):
    out = sys.stdout
    out.write(f'\nwatchdog: the test run passed its limit of {limit} s; the tests that started and did not end, '
              f'then the threads of process {pid} (same stacks counted together):\n')
    found = stacks(pid) if pid else None
    if found is None:
        out.write('watchdog: no stacks (gdb is missing or could not attach)\n')
    else:
        groups = {}
        for name, frames in found:
            groups.setdefault(tuple(frames[:16]), []).append(name)
        # Threads in the project's code last, nearest the list of tests.
        for frames, names in sorted(groups.items(), key=lambda item: (ours(item[0]), -len(item[1]))):
            counted = {}
            for name in names:
                counted[name] = counted.get(name, 0) + 1
            out.write('  ' + ', '.join(f'{n} ×{c}' if c > 1 else n for n, c in sorted(counted.items())) + ':\n')
            for frame in frames:
                out.write(f'      {frame}\n')
    out.write('watchdog: tests still running:\n')
    for name in running:
        out.write(f'  {name}\n')
    out.flush()


def main():
    if len(sys.argv) < 3:
        sys.exit('usage: watchdog.py SECONDS COMMAND...')
    limit = int(sys.argv[1])
    process = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    running = {}
    lock = threading.Lock()

    def forward():
        for raw in process.stdout:
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
            line = ANSI.sub('', raw.decode(errors='replace').rstrip('\n'))
            started, ended = STARTED.match(line), ENDED.match(line)
            with lock:
                if started and started.group(1) != 'run':
                    running[started.group(1)] = True
                elif ended:
                    running.pop(ended.group(1) or ended.group(2), None)

    reader = threading.Thread(target=forward, daemon=True)
    reader.start()
    deadline = time.monotonic() + limit
    while process.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
    if process.poll() is None:
        tests = [pid for pid in [process.pid] + descendants(process.pid) if 'PackageTests' in command_line(pid)]
        with lock:
            still = list(running)
        report(tests[0] if tests else None, still, limit)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        reader.join(timeout=5)
        sys.exit(124)
    reader.join()
    sys.exit(process.returncode)


if __name__ == '__main__':
    main()
