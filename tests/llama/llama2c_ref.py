# llama2c_ref.py CHECKPOINT N - greedy-decode N tokens from BOS (id 1) with a plain-Python llama2.c forward pass
# (RMSNorm eps 1e-5, interleaved RoPE theta 10000, GQA, SwiGLU, classifier = token embedding when shared).
# The oracle of tests/integration/450: llama.cpp running our F32 GGUF must produce the same ids.
import struct, math, sys
d=open(sys.argv[1],'rb').read()
dim,hid,nl,nh,nkv,voc,seq=struct.unpack('<7i',d[:28]); shared=voc>0; voc=abs(voc)
hs=dim//nh; kvd=dim*nkv//nh
off=28
def take(n):
    global off
    v=struct.unpack_from('<%df'%n,d,off); off+=4*n; return v
def mat(flat,rows,cols): return [flat[r*cols:(r+1)*cols] for r in range(rows)]
emb=mat(take(voc*dim),voc,dim)
rms_att=[take(dim) for _ in range(nl)]
wq=[mat(take(dim*dim),dim,dim) for _ in range(nl)]
wk=[mat(take(kvd*dim),kvd,dim) for _ in range(nl)]
wv=[mat(take(kvd*dim),kvd,dim) for _ in range(nl)]
wo=[mat(take(dim*dim),dim,dim) for _ in range(nl)]
rms_ffn=[take(dim) for _ in range(nl)]
w1=[mat(take(hid*dim),hid,dim) for _ in range(nl)]
w2=[mat(take(dim*hid),dim,hid) for _ in range(nl)]
w3=[mat(take(hid*dim),hid,dim) for _ in range(nl)]
rms_f=take(dim)
take(seq*hs)  # legacy RoPE tables
cls=emb if shared else mat(take(voc*dim),voc,dim)
def mv(W,x): return [sum(a*b for a,b in zip(r,x)) for r in W]
def rms(x,w):
    ss=sum(v*v for v in x)/len(x)+1e-5; s=1/math.sqrt(ss); return [a*s*b for a,b in zip(x,w)]
kc=[[] for _ in range(nl)]; vc=[[] for _ in range(nl)]
tok=1; out=[]
for pos in range(int(sys.argv[2])):
    x=list(emb[tok])
    for l in range(nl):
        xb=rms(x,rms_att[l]); q=mv(wq[l],xb); k=mv(wk[l],xb); v=mv(wv[l],xb)
        for i in range(0,dim,2):
            hd=i%hs; fr=1.0/(10000.0**(hd/hs)); val=pos*fr; fcr=math.cos(val); fci=math.sin(val)
            for vec in ([q,k] if i<kvd else [q]):
                v0,v1=vec[i],vec[i+1]; vec[i]=v0*fcr-v1*fci; vec[i+1]=v0*fci+v1*fcr
        kc[l].append(k); vc[l].append(v)
        att_out=[0.0]*dim
        for h in range(nh):
            kh=h//(nh//nkv); qh=q[h*hs:(h+1)*hs]
            sc=[sum(a*b for a,b in zip(qh,kk[kh*hs:(kh+1)*hs]))/math.sqrt(hs) for kk in kc[l]]
            m=max(sc); e=[math.exp(s-m) for s in sc]; z=sum(e); p=[a/z for a in e]
            for t,pt in enumerate(p):
                vv=vc[l][t]
                for j in range(hs): att_out[h*hs+j]+=pt*vv[kh*hs+j]
        o=mv(wo[l],att_out); x=[a+b for a,b in zip(x,o)]
        xb=rms(x,rms_ffn[l]); h1=mv(w1[l],xb); h3=mv(w3[l],xb)
        hb=[a/(1+math.exp(-a))*b for a,b in zip(h1,h3)]
        o=mv(w2[l],hb); x=[a+b for a,b in zip(x,o)]
    x=rms(x,rms_f); logits=mv(cls,x)
    tok=max(range(voc),key=lambda i:logits[i]); out.append(tok)
print(out)
