/**
 * Vietnamese text normalisation for TTS: rewrite what a TTS engine would misread (digits, dates,
 * times, units, phone numbers, the abbreviations of commune life) into the words a person would
 * say. Pure function, no I/O. The result is shown to the operator beside the audio, so it must stay
 * readable: punctuation is kept (it gives the synthesiser its pauses).
 *
 * Number reading follows standard (northern) usage: 21 "hai mươi mốt", 25 "hai mươi lăm",
 * 105 "một trăm linh năm" ("lẻ" on request), 2026 "hai nghìn không trăm hai mươi sáu",
 * 1.000.000 "một triệu", 3,5 "ba phẩy năm" (Vietnamese writes "." for thousands, "," for decimals).
 */

export interface ViNormalizeOptions {
  /** Word for a zero tens digit: "linh" (northern, default) or "lẻ" (southern). */
  zeroTens?: 'linh' | 'lẻ';
}

const DIGITS = ['không', 'một', 'hai', 'ba', 'bốn', 'năm', 'sáu', 'bảy', 'tám', 'chín'] as const;
const digit = (d: number): string => DIGITS[d]!;

/** Unicode-aware word boundaries (JS `\b` only knows ASCII letters). */
const L = '(?<![\\p{L}\\p{N}])';
const R = '(?![\\p{L}\\p{N}])';

function readTriple(g: number, full: boolean, zeroTens: string): string {
  const h = Math.floor(g / 100);
  const t = Math.floor(g / 10) % 10;
  const u = g % 10;
  const parts: string[] = [];
  const withHundreds = h > 0 || full;
  if (withHundreds) parts.push(`${digit(h)} trăm`);
  if (t === 0) {
    if (u > 0) {
      if (withHundreds) parts.push(zeroTens);
      parts.push(digit(u));
    }
  } else if (t === 1) {
    parts.push('mười');
    if (u === 5) parts.push('lăm');
    else if (u > 0) parts.push(digit(u));
  } else {
    parts.push(`${digit(t)} mươi`);
    if (u === 1) parts.push('mốt');
    else if (u === 5) parts.push('lăm');
    else if (u > 0) parts.push(digit(u));
  }
  return parts.join(' ');
}

/** Read a non-negative integer given as a digit string (any length). */
export function readInteger(digits: string, opts: ViNormalizeOptions = {}): string {
  const zeroTens = opts.zeroTens ?? 'linh';
  const s = digits.replace(/^0+(?=\d)/, '');
  if (!/^\d+$/.test(s)) throw new RangeError(`not digits: ${digits}`);
  if (/^0+$/.test(s)) return 'không';
  return readGroups(s, false, zeroTens);
}

/** `continuation`: this part follows a higher part (after "tỷ"), so small groups read "không trăm". */
function readGroups(s: string, continuation: boolean, zeroTens: string): string {
  if (s.length > 9) {
    const high = s.slice(0, -9);
    const low = s.slice(-9);
    const head = `${readGroups(high.replace(/^0+(?=\d)/, ''), continuation, zeroTens)} tỷ`;
    return /^0+$/.test(low) ? head : `${head} ${readGroups(low, true, zeroTens)}`;
  }
  const n = Number(s);
  const groups = [Math.floor(n / 1e6), Math.floor(n / 1e3) % 1000, n % 1000];
  const scales = ['triệu', 'nghìn', ''];
  const out: string[] = [];
  let started = continuation;
  for (let i = 0; i < 3; i++) {
    const g = groups[i]!;
    if (g === 0) continue;
    const words = readTriple(g, started, zeroTens);
    out.push(scales[i] ? `${words} ${scales[i]}` : words);
    started = true;
  }
  return out.join(' ');
}

/** Read a number as written in Vietnamese ("1.250.000", "3,5", "12"). */
export function readNumber(text: string, opts: ViNormalizeOptions = {}): string {
  const m = /^(\d{1,3}(?:\.\d{3})+|\d+)(?:,(\d+))?$/.exec(text);
  if (!m) throw new RangeError(`not a number: ${text}`);
  const int = readInteger(m[1]!.replace(/\./g, ''), opts);
  const frac = m[2];
  if (frac === undefined) return int;
  return `${int} phẩy ${readFraction(frac, opts)}`;
}

/** Decimals: "5" → năm, "25" → hai mươi lăm, "05"/"125" → digit by digit. */
function readFraction(frac: string, opts: ViNormalizeOptions): string {
  if (frac.length <= 2 && !frac.startsWith('0')) return readInteger(frac, opts);
  return readDigits(frac);
}

export function readDigits(s: string): string {
  return [...s].filter((c) => c >= '0' && c <= '9').map((c) => digit(Number(c))).join(' ');
}

// --- tables ----------------------------------------------------------------------------------

/** Case-sensitive acronyms, expanded as whole words. Order: longer first where they overlap. */
const ACRONYMS: [string, string][] = [
  ['UBMTTQ', 'Ủy ban Mặt trận Tổ quốc'],
  ['UBND', 'Ủy ban nhân dân'],
  ['HĐND', 'Hội đồng nhân dân'],
  ['MTTQ', 'Mặt trận Tổ quốc'],
  ['BHYT', 'bảo hiểm y tế'],
  ['BHXH', 'bảo hiểm xã hội'],
  ['BHTN', 'bảo hiểm thất nghiệp'],
  ['PCCC', 'phòng cháy chữa cháy'],
  ['PCTT', 'phòng chống thiên tai'],
  ['TKCN', 'tìm kiếm cứu nạn'],
  ['THCS', 'trung học cơ sở'],
  ['THPT', 'trung học phổ thông'],
  ['TTYT', 'trung tâm y tế'],
  ['CAND', 'Công an nhân dân'],
  ['QĐND', 'Quân đội nhân dân'],
  ['DQTV', 'dân quân tự vệ'],
  ['NVQS', 'nghĩa vụ quân sự'],
  ['ANTT', 'an ninh trật tự'],
  ['ATGT', 'an toàn giao thông'],
  ['VSATTP', 'vệ sinh an toàn thực phẩm'],
  ['ATTP', 'an toàn thực phẩm'],
  ['NTM', 'nông thôn mới'],
  ['HTX', 'hợp tác xã'],
  ['TDP', 'tổ dân phố'],
  ['KDC', 'khu dân cư'],
  ['GPMB', 'giải phóng mặt bằng'],
  ['ĐBQH', 'đại biểu Quốc hội'],
  ['ĐTN', 'Đoàn thanh niên'],
  ['CCB', 'Cựu chiến binh'],
  ['CBCC', 'cán bộ công chức'],
  ['CNTT', 'công nghệ thông tin'],
  ['KT-XH', 'kinh tế xã hội'],
  ['KTXH', 'kinh tế xã hội'],
  ['SĐT', 'số điện thoại'],
  ['ĐT', 'điện thoại'],
  ['KV', 'khu vực'],
  ['TW', 'trung ương'],
  ['QĐ', 'quyết định'],
  ['HCM', 'Hồ Chí Minh'],
  ['QS', 'quân sự'],
  ['VNĐ', 'đồng'],
  ['VND', 'đồng'],
];

/** Abbreviations written with a dot or slash (matched case-insensitively where marked). */
const DOTTED: [RegExp, string][] = [
  [new RegExp(`${L}v\\.v\\.?`, 'gu'), 'vân vân'],
  [new RegExp(`${L}(?:TP|Tp)\\.?\\s*(?:HCM|Hồ Chí Minh)${R}`, 'gu'), 'thành phố Hồ Chí Minh'],
  [new RegExp(`${L}TPHCM${R}`, 'gu'), 'thành phố Hồ Chí Minh'],
  [new RegExp(`${L}(?:TP|Tp)\\.\\s*`, 'gu'), 'thành phố '],
  [new RegExp(`${L}TP(?=\\s+\\p{Lu})`, 'gu'), 'thành phố'],
  [new RegExp(`${L}[Đđ]/[Cc]${R}`, 'gu'), 'đồng chí'],
  [new RegExp(`${L}PGS\\.\\s*`, 'gu'), 'phó giáo sư '],
  [new RegExp(`${L}GS\\.\\s*`, 'gu'), 'giáo sư '],
  [new RegExp(`${L}ThS\\.\\s*`, 'gu'), 'thạc sĩ '],
  [new RegExp(`${L}TS\\.\\s*`, 'gu'), 'tiến sĩ '],
  [new RegExp(`${L}(?:BS|Bs)\\.\\s*`, 'gu'), 'bác sĩ '],
  // Q./P. only before a number or a capitalised name ("Q.1", "P. Tân Định").
  [new RegExp(`${L}Q\\.\\s*(?=\\d|\\p{Lu})`, 'gu'), 'quận '],
  [new RegExp(`${L}P\\.\\s*(?=\\d|\\p{Lu})`, 'gu'), 'phường '],
  // TT: "TT. Phú Mỹ" / "TT Phú Mỹ" is a township; "TT Y tế", "TT Văn hóa" a centre.
  [new RegExp(`${L}TT\\.?\\s+(?=(?:Y tế|y tế|Văn hóa|văn hóa|VH|GDTX|Giáo dục|giáo dục|Chính trị|chính trị|Dịch vụ|dịch vụ)${R})`, 'gu'), 'trung tâm '],
  [new RegExp(`${L}TT(?:\\.\\s*|\\s+)(?=\\p{Lu})`, 'gu'), 'thị trấn '],
  // CA only when followed by an administrative level ("CA xã" = police of the commune).
  [new RegExp(`${L}CA(?=\\s+(?:xã|huyện|tỉnh|phường|thị trấn|thành phố|quận)${R})`, 'gu'), 'Công an'],
  // BCH: "ban chỉ huy" with quân sự / phòng chống …, otherwise "ban chấp hành" (Đoàn, Hội …).
  [new RegExp(`${L}BCH(?=\\s+(?:QS|quân sự|Quân sự|PCTT|phòng chống|Phòng chống)${R})`, 'gu'), 'Ban chỉ huy'],
  [new RegExp(`${L}BCH${R}`, 'gu'), 'Ban chấp hành'],
];

/** Units after a number: [pattern (no leading boundary), spoken form]. Longest first. */
const UNITS: [string, string][] = [
  ['km/h', 'ki lô mét trên giờ'],
  ['km²', 'ki lô mét vuông'],
  ['km2', 'ki lô mét vuông'],
  ['m/s', 'mét trên giây'],
  ['m³', 'mét khối'],
  ['m3', 'mét khối'],
  ['m²', 'mét vuông'],
  ['m2', 'mét vuông'],
  ['°C', 'độ xê'],
  ['ºC', 'độ xê'],
  ['℃', 'độ xê'],
  ['kWh', 'ki lô oát giờ'],
  ['kW', 'ki lô oát'],
  ['km', 'ki lô mét'],
  ['cm', 'xăng ti mét'],
  ['mm', 'mi li mét'],
  ['kg', 'ki lô gam'],
  ['mg', 'mi li gam'],
  ['ml', 'mi li lít'],
  ['ha', 'héc ta'],
  ['m', 'mét'],
  ['g', 'gam'],
  ['l', 'lít'],
  ['%', 'phần trăm'],
  ['°', 'độ'],
  ['đ', 'đồng'],
];

const NUM = '(?:\\d{1,3}(?:\\.\\d{3})+|\\d+)(?:,\\d+)?';

function esc(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}

// --- the rewrite -----------------------------------------------------------------------------

export function normalizeVietnamese(input: string, opts: ViNormalizeOptions = {}): string {
  const num = (s: string): string => readNumber(s, opts);
  let t = input.normalize('NFC');
  t = t.replace(/[\u2013\u2014\u2212]/g, '-').replace(/[\u00a0\u2009\u202f]/g, ' ');

  // 1. Dotted/contextual abbreviations, then plain acronyms.
  for (const [re, words] of DOTTED) t = t.replace(re, words);
  for (const [abbr, words] of ACRONYMS) t = t.replace(new RegExp(`${L}${esc(abbr)}${R}`, 'gu'), words);

  // 2. Phone numbers, digit by digit, keeping the writer's grouping as pauses.
  const speakPhone = (raw: string): string => {
    const plus = raw.trim().startsWith('+');
    const groups = raw.replace(/^\+/, '').split(/[\s.-]+/).filter(Boolean);
    const spoken = groups.map(readDigits);
    // Unbroken mobile numbers: group 4-3-3 (or 3-3-3 after +84) for natural pauses.
    if (groups.length === 1 && groups[0]!.length >= 9) {
      const d = groups[0]!;
      const cut = plus ? [2, 5, 8] : [4, 7];
      const parts: string[] = [];
      let prev = 0;
      for (const c of cut) {
        if (c < d.length) {
          parts.push(d.slice(prev, c));
          prev = c;
        }
      }
      parts.push(d.slice(prev));
      return `${plus ? 'cộng ' : ''}${parts.map(readDigits).join(', ')}`;
    }
    return `${plus ? 'cộng ' : ''}${spoken.join(', ')}`;
  };
  // +84 912 345 678 / 0912 345 678 / 0912.345.678 / 0912345678 / 024 3825 1234
  t = t.replace(new RegExp(`${L}(\\+84|0)((?:[\\s.-]?\\d){8,10})${R}`, 'gu'), (m: string) => {
    const digitsOnly = m.replace(/\D/g, '');
    const n = m.startsWith('+') ? digitsOnly.length - 2 : digitsOnly.length - 1;
    return n >= 8 && n <= 10 ? speakPhone(m) : m;
  });
  // Hotlines 1800/1900 xxxx(xx)
  t = t.replace(new RegExp(`${L}(1[89]00)([\\s.-]?\\d{3,6})${R}`, 'gu'), (m: string) => speakPhone(m));
  // Short service numbers after a calling word: "gọi 114", "đường dây nóng 113".
  t = t.replace(
    new RegExp(`${L}((?:gọi|Gọi|đường dây nóng|Đường dây nóng|hotline|Hotline|tổng đài|Tổng đài|điện thoại|Điện thoại)(?:\\s+(?:số|ngay|cho|tới|đến))?\\s+)(\\d{3,5})${R}`, 'gu'),
    (_m, lead: string, d: string) => `${lead}${readDigits(d)}`,
  );

  // 3. Dates.
  const validDay = (d: number): boolean => d >= 1 && d <= 31;
  const validMonth = (m: number): boolean => m >= 1 && m <= 12;
  const month = (m: number): string => (m === 4 ? 'tư' : readInteger(String(m), opts));
  const dateWords = (before: string, d: number, m: number, y?: string): string => {
    const hasNgay = /ngày\s*$/i.test(before);
    const head = `${hasNgay ? '' : 'ngày '}${readInteger(String(d), opts)} tháng ${month(m)}`;
    return y ? `${head} năm ${readInteger(y, opts)}` : head;
  };
  t = t.replace(new RegExp(`(^|[^\\p{L}\\p{N}])(\\d{1,2})([/.-])(\\d{1,2})\\3(\\d{4})${R}`, 'gu'), (m: string, pre: string, d: string, _s: string, mo: string, y: string, off: number, all: string) =>
    validDay(Number(d)) && validMonth(Number(mo)) ? pre + dateWords(all.slice(0, off) + pre, Number(d), Number(mo), y) : m,
  );
  // "tháng 12/2026", "tháng 4 năm 2026" handled by numbers; mm/yyyy after "tháng"
  t = t.replace(new RegExp(`(tháng\\s+)(\\d{1,2})/(\\d{4})${R}`, 'giu'), (m: string, pre: string, mo: string, y: string) =>
    validMonth(Number(mo)) ? `${pre}${month(Number(mo))} năm ${readInteger(y, opts)}` : m,
  );
  // d/m without year (slash only: "6/12")
  t = t.replace(new RegExp(`(^|[^\\p{L}\\p{N}/])(\\d{1,2})/(\\d{1,2})(?![\\p{L}\\p{N}/])`, 'gu'), (m: string, pre: string, d: string, mo: string, off: number, all: string) =>
    validDay(Number(d)) && validMonth(Number(mo)) ? pre + dateWords(all.slice(0, off) + pre, Number(d), Number(mo)) : m,
  );
  // "tháng 4" → "tháng tư"; "thứ 4" → "thứ tư", "thứ 1" → "thứ nhất"
  t = t.replace(new RegExp(`${L}(tháng|Tháng)\\s+(\\d{1,2})${R}`, 'gu'), (m: string, w: string, mo: string) => (validMonth(Number(mo)) ? `${w} ${month(Number(mo))}` : m));
  t = t.replace(new RegExp(`${L}(thứ|Thứ)\\s+(\\d)${R}`, 'gu'), (_m, w: string, d: string) => `${w} ${d === '1' ? 'nhất' : d === '4' ? 'tư' : digit(Number(d))}`);

  // 4. Times: 17h30, 17h, 17g30, 17:30, 17:30:15, 6h sáng; "7h-11h" is a range.
  t = t.replace(new RegExp(`${L}(\\d{1,2}(?:h\\d{0,2}|:\\d{2}))\\s?-\\s?(?=\\d{1,2}(?:h|:\\d{2}))`, 'gu'), '$1 đến ');
  const timeWords = (h: string, mi?: string, s?: string): string => {
    let out = `${readInteger(h, opts)} giờ`;
    if (mi !== undefined && mi !== '' && Number(mi) > 0) out += ` ${readInteger(mi, opts)} phút`;
    if (s !== undefined && s !== '' && Number(s) > 0) out += ` ${readInteger(s, opts)} giây`;
    return out;
  };
  t = t.replace(new RegExp(`${L}(\\d{1,2}):(\\d{2})(?::(\\d{2}))?${R}`, 'gu'), (m: string, h: string, mi: string, s?: string) =>
    Number(h) <= 24 && Number(mi) < 60 && (s === undefined || Number(s) < 60) ? timeWords(h, mi, s) : m,
  );
  // "h" alone is hours ("6h sáng"); "g" only with minutes ("7g30"), since "500g" is grams.
  t = t.replace(new RegExp(`${L}(\\d{1,2})\\s?(?:h(\\d{1,2})?|g(\\d{1,2}))(?:'|p|ph)?${R}`, 'gu'), (m: string, h: string, mi1?: string, mi2?: string) => {
    const mi = mi1 ?? mi2;
    return Number(h) <= 24 && (mi === undefined || Number(mi) < 60) ? timeWords(h, mi) : m;
  });

  // 5. Units after a number ("5km", "5 km", "35°C", "50%", "100.000đ").
  const unitAlt = UNITS.map(([u]) => esc(u)).join('|');
  t = t.replace(new RegExp(`(${NUM})\\s?(${unitAlt})(?![\\p{L}\\p{N}])`, 'gu'), (_m, n: string, u: string) => {
    const words = UNITS.find(([x]) => x === u)![1];
    return `${n} ${words}`;
  });

  // 6. Ranges and signs: "20-25" → "20 đến 25", "-5" → "âm 5".
  t = t.replace(new RegExp(`(${NUM})\\s?-\\s?(?=${NUM}(?![\\p{L}]))`, 'gu'), '$1 đến ');
  t = t.replace(new RegExp(`(^|[\\s(])-(?=\\d)`, 'gu'), '$1âm ');

  // 7. Remaining numbers. A dot followed by 1-2 digits is taken as a decimal point ("2.5 triệu").
  t = t.replace(new RegExp(`(?<![\\p{L}\\p{N}.,])(\\d+)\\.(\\d{1,2})(?![\\p{N}.])`, 'gu'), (_m, a: string, b: string) => `${num(a)} phẩy ${readFraction(b, opts)}`);
  t = t.replace(new RegExp(`(?<![\\p{N}])${NUM}(?![\\p{N}])`, 'gu'), (m: string) => num(m));

  // 8. Leftover symbols and codes. "đồng/người" = "đồng một người" (per person).
  t = t.replace(new RegExp(`(đồng|lít|gam|mét|héc ta|tấn|mét khối)/(?=\\p{L})`, 'gu'), '$1 một ');
  t = t.replace(/\s*&\s*/g, ' và ');
  t = t.replace(new RegExp(`(?<=[\\p{L}])-(?=[\\p{L}])`, 'gu'), ' ');
  t = t.replace(new RegExp(`(?<=[\\p{L}\\p{N}])/(?=[\\p{L}\\p{N}])`, 'gu'), ' ');
  t = t.replace(/[ \t]+/g, ' ').replace(/ ([,.;:!?])/g, '$1').replace(/\n{3,}/g, '\n\n');
  return t.trim();
}
