#!/usr/bin/env python3
"""Where coordinator_bench's CPU goes, from a perf profile with call graphs.

  perf record -e cpu-clock -F 250 --call-graph dwarf,16384 -o perf.data -- \\
      build/bench/coordinator_bench --mode load --rps 1000 --seconds 20
  perf script -i perf.data -F comm,tid,ip,sym > perf.txt
  bench/perf_attribution.py perf.txt

Each sample counts for the first of: the worker daemons (a d2lora::worker frame
on its stack), the bench's clients (d2lora::bench), the coordinator
(d2lora::server), gRPC, other. Then the coordinator's samples by their
outermost server frame (the RPC or thread), and the samples with fsync on the
stack or malloc/free as the leaf. Raw result: bench/measured/coordinator_profile-*.txt.
"""
import collections,sys
samples=[];cur=None
for line in open(sys.argv[1],errors='replace'):
    if not line.strip():
        if cur: samples.append(cur); cur=None
        continue
    if cur is None: cur={'head':line.strip(),'frames':[]}
    else: cur['frames'].append(line.strip().split(' ',1)[1] if ' ' in line.strip() else line.strip())
if cur: samples.append(cur)
def cls(s):
    fr=' | '.join(s['frames'])
    if 'd2lora::worker' in fr: return 'worker daemons'
    if 'd2lora::bench' in fr: return 'bench (clients, sim)'
    if 'd2lora::server' in fr: return 'coordinator (server code)'
    if 'grpc' in fr.lower(): return 'grpc (unattributed)'
    return 'other'
n=len(samples); print('samples',n)
c=collections.Counter(cls(s) for s in samples)
for k,v in c.most_common(): print(f'  {k:30s} {v:5d} {100*v/n:5.1f}%')
sub=collections.Counter()
for s in samples:
    inner=[f for f in s['frames'] if 'd2lora::server' in f]
    if inner and cls(s)=='coordinator (server code)': sub[inner[-1].split('(')[0]]+=1
print(' coordinator, by outermost server frame:')
for k,v in sub.most_common(10): print(f'  {v:5d} {100*v/n:5.1f}%  {k}')
fs=sum(1 for s in samples if any('fsync' in f for f in s['frames']))
print(f' any fsync on the stack: {fs} {100*fs/n:.1f}%')
ml=sum(1 for s in samples if s['frames'] and any(k in s['frames'][0] for k in ('malloc','_int_free','cfree','malloc_consolidate','unlink_chunk','tcache')))
print(f' malloc/free leaf: {ml} {100*ml/n:.1f}%')
