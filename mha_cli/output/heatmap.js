// The attention heatmap page's script (mha_cli/output/heatmap.py writes it inline).
const meta = JSON.parse(document.getElementById('meta').textContent);
const raw = atob(document.getElementById('weights').textContent.trim());
const bytes = new Uint8Array(raw.length);
for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
const weights = new Float32Array(bytes.buffer);
const axes = meta.axes, shape = meta.shape;
const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
const of = role => axes.map((a, i) => [a, i]).filter(([a]) => a.role === role);
const state = {free: {}, head: 0, query: null};
function layout(list) {  // positions of a list of axes as blocks of rows x columns
  const sizes = list.map(([a]) => a.size);
  const cols = sizes.length ? sizes[sizes.length - 1] : 1;
  const rows = sizes.length > 1 ? sizes[sizes.length - 2] : 1;
  const lead = sizes.slice(0, Math.max(0, sizes.length - 2));
  return {cols, rows, lead, count: sizes.reduce((a, b) => a * b, 1)};
}
function unravel(flat, list) {
  const out = [];
  for (let i = list.length - 1; i >= 0; i--) { const n = list[i][0].size; out.unshift(flat % n); flat = Math.floor(flat / n); }
  return out;
}
function draw(container, list, kind) {
  container.innerHTML = '';
  const {cols, rows, lead, count} = layout(list);
  const per = rows * cols;
  for (let b = 0; b < count / per; b++) {
    const wrap = document.createElement('div');
    if (lead.length) {
      const label = document.createElement('div'); label.className = 'block-label';
      const idx = unravel(b * per, list).slice(0, lead.length);
      label.textContent = list.slice(0, lead.length).map(([a], i) => a.name + ' ' + idx[i]).join(', ');
      wrap.appendChild(label);
    }
    const grid = document.createElement('div'); grid.className = 'grid';
    grid.style.gridTemplateColumns = `repeat(${cols}, 18px)`;
    for (let p = 0; p < per; p++) {
      const flat = b * per + p, cell = document.createElement('div');
      cell.className = 'cell'; cell.dataset.position = unravel(flat, list).join(',');
      if (kind === 'query') {
        cell.addEventListener('click', () => select(flat));
        cell.title = 'query (' + cell.dataset.position + ')';
      }
      grid.appendChild(cell);
    }
    wrap.appendChild(grid); container.appendChild(wrap);
  }
}
function offset(qFlat) {
  let index = 0;
  for (const [a, i] of of('free')) index += (state.free[a.name] || 0) * strides[i];
  for (const [a, i] of of('heads')) index += state.head * strides[i];
  const q = unravel(qFlat, of('query'));
  of('query').forEach(([a, i], k) => { index += q[k] * strides[i]; });
  return index;
}
function select(qFlat) {
  state.query = qFlat;
  document.querySelectorAll('#queries .cell').forEach((c, i) => c.classList.toggle('selected', i === qFlat));
  const base = offset(qFlat), keys = of('key');
  const cells = document.querySelectorAll('#keys .cell');
  const values = Array.from(cells, (_, k) => {
    const pos = unravel(k, keys); let index = base;
    keys.forEach(([a, i], n) => { index += pos[n] * strides[i]; });
    return weights[index];
  });
  const top = Math.max(...values), sum = values.reduce((a, b) => a + b, 0);
  let best = 0; values.forEach((v, k) => { if (v > values[best]) best = k; });
  cells.forEach((cell, k) => {
    const v = values[k];
    cell.dataset.weight = v.toFixed(6);
    cell.style.background = `rgba(31, 96, 196, ${top > 0 ? (v / top).toFixed(3) : 0})`;
    cell.title = 'key (' + cell.dataset.position + '): ' + v.toFixed(4);
  });
  const where = document.querySelectorAll('#queries .cell')[qFlat].dataset.position;
  const line = document.getElementById('selected');
  line.dataset.query = where; line.dataset.head = state.head;
  line.dataset.largest = cells[best].dataset.position;
  line.textContent = `query (${where})` + (of('heads').length ? `, head ${state.head}` : '') +
    of('free').map(([a]) => `, ${a.name} ${state.free[a.name] || 0}`).join('') +
    `: weights over ${values.length} key positions, sum ${sum.toFixed(3)}; largest ${top.toFixed(4)} at key (${cells[best].dataset.position})`;
}
function control(name, size, onChange) {
  const label = document.createElement('label'); label.textContent = name + ' ';
  const box = document.createElement('select'); box.id = 'select-' + name;
  for (let i = 0; i < size; i++) { const o = document.createElement('option'); o.value = i; o.textContent = i; box.appendChild(o); }
  box.addEventListener('change', () => { onChange(+box.value); if (state.query !== null) select(state.query); });
  label.appendChild(box); document.getElementById('controls').appendChild(label);
}
for (const [a] of of('heads')) control('head', a.size, v => { state.head = v; });
for (const [a] of of('free')) control(a.name, a.size, v => { state.free[a.name] = v; });
draw(document.getElementById('queries'), of('query'), 'query');
draw(document.getElementById('keys'), of('key'), 'key');
select(0);
