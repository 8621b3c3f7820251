"""The per-sample browser as an HTML fragment: the data embedded once as JSON, rendered
by a short plain script (no network, no libraries) so ``report.html`` stays one file.

Every piece of text from a model or a dataset is put into the page with ``textContent``,
never as markup: a reply can hold anything, and must not be able to change the page.
"""

from __future__ import annotations

import json
from typing import Any

CSS = """
.pb-filters{display:flex;flex-wrap:wrap;gap:.4em 1em;align-items:center;margin:.6em 0;font-size:14px}
.pb-filters select{max-width:16em}
.pb-count{font-size:14px;color:#444;margin:.3em 0}
.pb-sample{border:1px solid #ddd;border-radius:6px;padding:.5em .7em;margin:.7em 0}
.pb-head{display:flex;flex-wrap:wrap;gap:.3em 1em;align-items:baseline;font-size:14px}
.pb-head b{font-size:15px}
.pb-media{display:flex;gap:.8em;align-items:flex-start;margin:.4em 0}
.pb-media img{width:96px;height:auto;image-rendering:pixelated;margin:0;cursor:zoom-in}
.pb-media img.pb-zoom{width:min(100%,512px);cursor:zoom-out}
.pb-text{font-size:13px;white-space:pre-wrap;max-height:8em;overflow:auto;background:#fafafa;padding:.3em;flex:1}
.pb-gold{font-size:13px}
.pb-lab{display:inline-block;background:#e8eef9;border-radius:3px;padding:0 .3em;margin:1px;font-size:12px}
.pb-rows td,.pb-rows th{text-align:left;vertical-align:top;font-size:12px}
.pb-note{overflow-wrap:anywhere}
.pb-rows td.pb-reply{max-width:26em;white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,monospace}
tr.pb-wrong td.pb-f1{color:#b00020;font-weight:600}tr.pb-err td{background:#fde8e8}
.pb-demo{display:inline-block;margin:1px;font-size:11px}.pb-demo img{width:40px;margin:0;vertical-align:middle}
.pb-more{margin:.6em 0}
@media (max-width:600px){.pb-rows,.pb-rows tbody,.pb-rows tr,.pb-rows td{display:block;width:auto}
.pb-rows tr.pb-hd{display:none}.pb-rows tr{border-top:1px solid #ccc;padding:.3em 0}
.pb-rows td{border:none;padding:1px 2px}.pb-rows td.pb-reply{max-width:none}
.pb-rows td::before{content:attr(data-h) ": ";font-weight:600;font-family:system-ui,sans-serif}}
"""

HTML = """<div id="pb-browser"><p class="pb-note"></p>
<div class="pb-filters">
<label>task <select id="pb-f-task"><option value="">all</option></select></label>
<label>cell <select id="pb-f-cell"><option value="">all</option></select></label>
<label>sample type <select id="pb-f-type"><option value="">all</option></select></label>
<label>label <select id="pb-f-label"><option value="">any</option></select></label>
<label><input type="checkbox" id="pb-f-wrong"> wrong answers only</label>
<label><input type="checkbox" id="pb-f-err"> errors and unparseable only</label>
</div>
<p class="pb-count" id="pb-count"></p><div id="pb-list"></div>
<button class="pb-more" id="pb-more" type="button">show more</button></div>"""

# The script: filters pick rows; a sample is shown when one of its rows passes; samples
# are rendered a page at a time so a large run stays quick to open.
JS = r"""
(function(){
const D = JSON.parse(document.getElementById('pb-data').textContent);
const PAGE = 25; let shown = PAGE;
const $ = id => document.getElementById(id);
function el(tag, cls, text){const e=document.createElement(tag); if(cls) e.className=cls;
  if(text!==undefined&&text!==null) e.textContent=text; return e;}
function opts(sel, items){for(const [v,t] of items){const o=el('option',null,t); o.value=v; sel.appendChild(o);}}
document.querySelector('#pb-browser .pb-note').textContent = D.note;
opts($('pb-f-task'), Object.keys(D.labels).map(t=>[t,t]));
opts($('pb-f-cell'), D.cells.map((c,i)=>[String(i), c.task+': '+c.name]));
opts($('pb-f-type'), D.types.map(t=>[t,t]));
const labs=[]; for(const t in D.labels) for(const l of D.labels[t]) if(!labs.includes(l)) labs.push(l);
opts($('pb-f-label'), labs.map(l=>[l,l]));
function chips(parent, labels){ if(!labels.length){parent.appendChild(el('span','pb-lab','(none)'));}
  for(const l of labels) parent.appendChild(el('span','pb-lab',l)); }
function rowPasses(s, r, f){
  if(f.cell!=='' && String(r.c)!==f.cell) return false;
  if(f.wrong && r.right) return false;
  if(f.err && !(r.err || !r.ok)) return false;
  if(f.label && !(s.gold.includes(f.label) || r.labels.includes(f.label))) return false;
  return true;}
function filters(){return {task:$('pb-f-task').value, cell:$('pb-f-cell').value, type:$('pb-f-type').value,
  label:$('pb-f-label').value, wrong:$('pb-f-wrong').checked, err:$('pb-f-err').checked};}
function demoEl(key){const d=D.demos[key]||{id:key}; const s=el('span','pb-demo');
  s.title = d.id + (d.gold ? ' - gold: ' + (d.gold.join(', ')||'(none)') : '') + (d.text ? '\n' + d.text : '');
  if(d.img){const i=el('img'); i.src=d.img; i.alt=d.id; s.appendChild(i);} else s.textContent=d.id;
  return s;}
function card(s, rows){
  const c=el('section','pb-sample'); c.dataset.id=s.id;
  const h=el('div','pb-head'); h.appendChild(el('b',null,s.id)); h.appendChild(el('span',null,s.task));
  h.appendChild(el('span',null,'type: '+s.type)); c.appendChild(h);
  const m=el('div','pb-media');
  if(s.img){const i=el('img'); i.src=s.img; i.alt=s.id; i.title='click to enlarge';
    i.addEventListener('click',()=>{i.classList.toggle('pb-zoom');}); m.appendChild(i);}
  if(s.text) m.appendChild(el('div','pb-text',s.text));
  const g=el('div','pb-gold'); g.appendChild(el('span',null,'gold: ')); chips(g, s.gold); m.appendChild(g);
  c.appendChild(m);
  const wrap=el('div','scroll'); const t=el('table','pb-rows'); const hd=el('tr','pb-hd');
  const H=['cell','reply','parsed','demos shown','F1'];
  for(const x of H) hd.appendChild(el('th',null,x));
  t.appendChild(hd);
  for(const r of rows){const tr=el('tr','pb-row'+(r.right?'':' pb-wrong')+(r.err||!r.ok?' pb-err':''));
    tr.dataset.cell=String(r.c);
    tr.appendChild(el('td',null,D.cells[r.c].name));
    tr.appendChild(el('td','pb-reply', r.err ? 'error: '+r.err : (r.reply || '(no reply text)')));
    const p=el('td'); chips(p, r.labels); if(!r.ok) p.appendChild(el('span',null,' unparseable')); tr.appendChild(p);
    const d=el('td'); for(const k of r.demos) d.appendChild(demoEl(k)); tr.appendChild(d);
    tr.appendChild(el('td','pb-f1',r.f1.toFixed(2)));
    tr.querySelectorAll('td').forEach((td,i)=>{td.dataset.h=H[i];}); t.appendChild(tr);}
  wrap.appendChild(t); c.appendChild(wrap); return c;}
function render(){
  const f=filters(); const list=$('pb-list'); list.textContent='';
  const hits=[]; let nrows=0;
  for(const s of D.samples){ if(f.task && s.task!==f.task) continue; if(f.type && s.type!==f.type) continue;
    const rows=s.rows.filter(r=>rowPasses(s,r,f)); if(rows.length){hits.push([s,rows]); nrows+=rows.length;} }
  for(const [s,rows] of hits.slice(0, shown)) list.appendChild(card(s, rows));
  $('pb-count').textContent = hits.length+' of '+D.samples.length+' samples ('+nrows+' answers) match'
    + (hits.length>shown ? '; showing the first '+shown : '');
  $('pb-more').style.display = hits.length>shown ? '' : 'none';}
for(const id of ['pb-f-task','pb-f-cell','pb-f-type','pb-f-label','pb-f-wrong','pb-f-err'])
  $(id).addEventListener('change', ()=>{shown=PAGE; render();});
$('pb-more').addEventListener('click', ()=>{shown+=PAGE; render();});
render();
})();
"""


def browser_html(data: dict[str, Any]) -> str:
    """The browser section: the markup, the data once as JSON, the script that renders it."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    # "<" only occurs inside JSON strings, where \u003c means the same: a reply holding
    # "</script>" or "<!--" cannot end or derail the script block
    payload = payload.replace("<", "\\u003c")
    return f"{HTML}<script type='application/json' id='pb-data'>{payload}</script><script>{JS}</script>"
