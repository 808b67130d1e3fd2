"""Why the classification probe standardises its features (README: "Heads at 1 %"): the MGCA probe
(AdamW lr 5e-4, batch 48, 300 steps, a linear head) on raw vs standardised pooled ResNet-18 features
of phantom v2 rsna_cls at 64 px, 1 % subsets for seeds 42/0/1 and 100 % (2000 steps); not part of the package.

    python tools/probe_norm_check.py random ENCODER.pt ...

ENCODER.pt: torchvision-keyed ResNet-18 weights (e.g. a cached encoder's encoder.safetensors, or encoder.pt).
"""

import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from sklearn.metrics import roc_auc_score

from benchmark.data.sets.rsna import phantom_rsna
from benchmark.data.splits import draw_subset
from benchmark.data.transforms import downstream_batch
from benchmark.pretraining import read_weights

torch.set_num_threads(2)
tr=phantom_rsna("train",10000,64); te=phantom_rsna("test",1000,64)
ytr,yte=np.asarray(tr.labels),np.asarray(te.labels)
ids=[str(i) for i in range(len(ytr))]
def feats(path):
    torch.manual_seed(0)
    net=torchvision.models.resnet18(); net.fc=torch.nn.Identity()
    if path!="random": net.load_state_dict(read_weights(Path(path)),strict=False)  # .safetensors or .pt
    net.eval(); out=[]
    with torch.no_grad():
        for d in (tr,te):
            out.append(torch.cat([net(downstream_batch(d.images[i:i+500],64)) for i in range(0,len(d.ids),500)]))
    return out
def probe(xtr,ytr_,xte,norm,lr=5e-4,steps=300,bs=48,seed=0):
    xtr=torch.as_tensor(xtr); xte=torch.as_tensor(xte)
    if norm:
        mu,sd=xtr.mean(0),xtr.std(0)+1e-6; xtr=(xtr-mu)/sd; xte=(xte-mu)/sd
    g=torch.Generator().manual_seed(seed); head=torch.nn.Linear(xtr.shape[1],1)
    opt=torch.optim.AdamW(head.parameters(),lr=lr,weight_decay=1e-6); y=torch.as_tensor(ytr_,dtype=torch.float32)
    n=len(y); s=0
    while s<steps:
        for b in torch.randperm(n,generator=g).split(bs):
            l=torch.nn.functional.binary_cross_entropy_with_logits(head(xtr[b]).squeeze(1),y[b]); opt.zero_grad(); l.backward(); opt.step(); s+=1
            if s>=steps: break
    with torch.no_grad(): return roc_auc_score(yte, head(xte).squeeze(1).numpy())
for path in sys.argv[1:]:
    ftr,fte=feats(path)
    print(path[-40:], "feature scale: mean|x|", float(ftr.abs().mean()), "std over images (median dim)", float(ftr.std(0).median()))
    for norm in (False,True):
        r=[]
        for seed in (42,0,1):
            rows=[int(i) for i in draw_subset(ids,ytr,0.01,seed)]
            r.append(probe(ftr[rows],ytr[rows],fte,norm,seed=seed))
        full=probe(ftr,ytr,fte,norm,steps=2000)
        print("  norm" if norm else "  raw ", "1%", np.round(r,3), round(float(np.mean(r)),3), "100%", round(full,3), flush=True)
