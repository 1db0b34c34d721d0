/** Vietnamese text normalisation for TTS: table-driven. */
import { describe, expect, it } from 'vitest';
import { normalizeVietnamese, readInteger, readNumber } from '../../audio-pipeline/src/text/vi-normalize.js';

describe('readInteger: cardinal numbers', () => {
  const table: [string, string][] = [
    ['0', 'không'],
    ['1', 'một'],
    ['4', 'bốn'],
    ['5', 'năm'],
    ['10', 'mười'],
    ['11', 'mười một'],
    ['14', 'mười bốn'],
    ['15', 'mười lăm'],
    ['20', 'hai mươi'],
    ['21', 'hai mươi mốt'],
    ['24', 'hai mươi bốn'],
    ['25', 'hai mươi lăm'],
    ['31', 'ba mươi mốt'],
    ['55', 'năm mươi lăm'],
    ['99', 'chín mươi chín'],
    ['100', 'một trăm'],
    ['101', 'một trăm linh một'],
    ['105', 'một trăm linh năm'],
    ['110', 'một trăm mười'],
    ['115', 'một trăm mười lăm'],
    ['121', 'một trăm hai mươi mốt'],
    ['999', 'chín trăm chín mươi chín'],
    ['1000', 'một nghìn'],
    ['1005', 'một nghìn không trăm linh năm'],
    ['1010', 'một nghìn không trăm mười'],
    ['1200', 'một nghìn hai trăm'],
    ['2026', 'hai nghìn không trăm hai mươi sáu'],
    ['10000', 'mười nghìn'],
    ['15000', 'mười lăm nghìn'],
    ['21000', 'hai mươi mốt nghìn'],
    ['100000', 'một trăm nghìn'],
    ['1000000', 'một triệu'],
    ['1000005', 'một triệu không trăm linh năm'],
    ['2500000', 'hai triệu năm trăm nghìn'],
    ['1000000000', 'một tỷ'],
    ['3000000001', 'ba tỷ không trăm linh một'],
    ['1234567890', 'một tỷ hai trăm ba mươi bốn triệu năm trăm sáu mươi bảy nghìn tám trăm chín mươi'],
    ['1000000000000', 'một nghìn tỷ'],
    ['007', 'bảy'],
  ];
  for (const [n, words] of table) {
    it(`${n} → ${words}`, () => expect(readInteger(n)).toBe(words));
  }
  it('southern "lẻ" on request', () => expect(readInteger('105', { zeroTens: 'lẻ' })).toBe('một trăm lẻ năm'));
});

describe('readNumber: separators and decimals', () => {
  const table: [string, string][] = [
    ['1.000', 'một nghìn'],
    ['1.000.000', 'một triệu'],
    ['12.500.000', 'mười hai triệu năm trăm nghìn'],
    ['3,5', 'ba phẩy năm'],
    ['0,25', 'không phẩy hai mươi lăm'],
    ['2,05', 'hai phẩy không năm'],
    ['1.234,5', 'một nghìn hai trăm ba mươi bốn phẩy năm'],
  ];
  for (const [n, words] of table) it(`${n} → ${words}`, () => expect(readNumber(n)).toBe(words));
});

describe('normalizeVietnamese', () => {
  const table: [string, string, string][] = [
    // [what, input, expected]
    ['date dd/mm/yyyy', 'Ngày 06/12/2026 họp dân.', 'Ngày sáu tháng mười hai năm hai nghìn không trăm hai mươi sáu họp dân.'],
    ['date without "ngày"', 'Họp dân 06/12/2026.', 'Họp dân ngày sáu tháng mười hai năm hai nghìn không trăm hai mươi sáu.'],
    ['date d/m', 'Từ 6/12 cắt điện', 'Từ ngày sáu tháng mười hai cắt điện'],
    ['date with dashes', 'hạn chót 15-01-2027', 'hạn chót ngày mười lăm tháng một năm hai nghìn không trăm hai mươi bảy'],
    ['date with dots', 'ngày 1.4.2026', 'ngày một tháng tư năm hai nghìn không trăm hai mươi sáu'],
    ['month four is "tư"', 'tháng 4 năm 2026', 'tháng tư năm hai nghìn không trăm hai mươi sáu'],
    ['month/year', 'trong tháng 12/2026', 'trong tháng mười hai năm hai nghìn không trăm hai mươi sáu'],
    ['time 17h30', 'lúc 17h30 chiều nay', 'lúc mười bảy giờ ba mươi phút chiều nay'],
    ['time 17:30', 'lúc 17:30', 'lúc mười bảy giờ ba mươi phút'],
    ['time 6h', 'từ 6h sáng', 'từ sáu giờ sáng'],
    ['time 7g30', 'họp lúc 7g30', 'họp lúc bảy giờ ba mươi phút'],
    ['time 17h05', 'đến 17h05', 'đến mười bảy giờ năm phút'],
    ['time with seconds', '08:15:30', 'tám giờ mười lăm phút ba mươi giây'],
    ['time range', 'từ 7h-11h', 'từ bảy giờ đến mười một giờ'],
    ['weekday', 'Thứ 4 và thứ 7', 'Thứ tư và thứ bảy'],
    ['km', 'cách bờ 20km', 'cách bờ hai mươi ki lô mét'],
    ['km/h', 'gió giật 90 km/h', 'gió giật chín mươi ki lô mét trên giờ'],
    ['mm rain', 'lượng mưa 150mm', 'lượng mưa một trăm năm mươi mi li mét'],
    ['°C and negative', 'nhiệt độ -2°C', 'nhiệt độ âm hai độ xê'],
    ['range of °C', 'nhiệt độ 25-30°C', 'nhiệt độ hai mươi lăm đến ba mươi độ xê'],
    ['percent', 'đạt 95% kế hoạch', 'đạt chín mươi lăm phần trăm kế hoạch'],
    ['decimal percent', 'tăng 2,5%', 'tăng hai phẩy năm phần trăm'],
    ['hectares', 'thu hoạch 12,5 ha lúa', 'thu hoạch mười hai phẩy năm héc ta lúa'],
    ['kg and g', '2kg gạo, 500g muối', 'hai ki lô gam gạo, năm trăm gam muối'],
    ['m3 and l', '30m3 nước, 5 l dầu', 'ba mươi mét khối nước, năm lít dầu'],
    ['metres and cm', 'sâu 1,2 m, rộng 40cm', 'sâu một phẩy hai mét, rộng bốn mươi xăng ti mét'],
    ['money', 'mức hỗ trợ 1.500.000đ/người', 'mức hỗ trợ một triệu năm trăm nghìn đồng một người'],
    ['money VNĐ', 'phí 50.000 VNĐ', 'phí năm mươi nghìn đồng'],
    ['phone spaced', 'gọi 0912 345 678', 'gọi không chín một hai, ba bốn năm, sáu bảy tám'],
    ['phone unbroken', 'SĐT 0912345678.', 'số điện thoại không chín một hai, ba bốn năm, sáu bảy tám.'],
    ['phone dotted', 'liên hệ 0912.345.678', 'liên hệ không chín một hai, ba bốn năm, sáu bảy tám'],
    ['phone +84', 'hoặc +84 912 345 678', 'hoặc cộng tám bốn, chín một hai, ba bốn năm, sáu bảy tám'],
    ['landline', 'ĐT: 024 3825 1234', 'điện thoại: không hai bốn, ba tám hai năm, một hai ba bốn'],
    ['emergency number', 'khi có cháy gọi 114', 'khi có cháy gọi một một bốn'],
    ['hotline', 'đường dây nóng 1900 1234', 'đường dây nóng một chín không không, một hai ba bốn'],
    ['UBND', 'UBND xã thông báo', 'Ủy ban nhân dân xã thông báo'],
    ['HĐND', 'kỳ họp HĐND xã', 'kỳ họp Hội đồng nhân dân xã'],
    ['MTTQ', 'Ban công tác MTTQ thôn', 'Ban công tác Mặt trận Tổ quốc thôn'],
    ['UBMTTQ', 'UBMTTQ Việt Nam', 'Ủy ban Mặt trận Tổ quốc Việt Nam'],
    ['BHYT', 'gia hạn thẻ BHYT', 'gia hạn thẻ bảo hiểm y tế'],
    ['BHXH', 'đóng BHXH tự nguyện', 'đóng bảo hiểm xã hội tự nguyện'],
    ['PCCC', 'diễn tập PCCC', 'diễn tập phòng cháy chữa cháy'],
    ['PCTT&TKCN', 'Ban chỉ huy PCTT&TKCN', 'Ban chỉ huy phòng chống thiên tai và tìm kiếm cứu nạn'],
    ['TP.', 'TP. Huế', 'thành phố Huế'],
    ['TP.HCM', 'lên TP.HCM', 'lên thành phố Hồ Chí Minh'],
    ['TP HCM', 'về TP HCM', 'về thành phố Hồ Chí Minh'],
    ['Q. and P.', 'số 5, P.3, Q. Bình Thạnh', 'số năm, phường ba, quận Bình Thạnh'],
    ['TT township', 'TT. Phú Mỹ', 'thị trấn Phú Mỹ'],
    ['TT centre', 'TT Y tế huyện', 'trung tâm Y tế huyện'],
    ['TTYT', 'TTYT huyện', 'trung tâm y tế huyện'],
    ['THCS/THPT', 'học sinh THCS và THPT', 'học sinh trung học cơ sở và trung học phổ thông'],
    ['CAND', 'chiến sĩ CAND', 'chiến sĩ Công an nhân dân'],
    ['QĐND', 'ngày thành lập QĐND', 'ngày thành lập Quân đội nhân dân'],
    ['CA + level', 'CA xã đề nghị', 'Công an xã đề nghị'],
    ['CA alone stays', 'bài CA trù', 'bài CA trù'],
    ['KV', 'KV 3 mất điện', 'khu vực ba mất điện'],
    ['v.v.', 'gà, vịt, lợn v.v. phải tiêm phòng', 'gà, vịt, lợn vân vân phải tiêm phòng'],
    ['HTX', 'HTX nông nghiệp', 'hợp tác xã nông nghiệp'],
    ['NVQS', 'khám tuyển NVQS', 'khám tuyển nghĩa vụ quân sự'],
    ['BCH quân sự', 'BCH QS xã', 'Ban chỉ huy quân sự xã'],
    ['BCH Đoàn', 'BCH Đoàn xã', 'Ban chấp hành Đoàn xã'],
    ['Đ/c', 'Đ/c Chủ tịch', 'đồng chí Chủ tịch'],
    ['decision code', 'Quyết định số 123/QĐ-UBND', 'Quyết định số một trăm hai mươi ba quyết định Ủy ban nhân dân'],
    ['year range', 'giai đoạn 2021-2025', 'giai đoạn hai nghìn không trăm hai mươi mốt đến hai nghìn không trăm hai mươi lăm'],
    ['Covid-19', 'phòng Covid-19', 'phòng Covid mười chín'],
    ['thousands', 'có 1.250 hộ', 'có một nghìn hai trăm năm mươi hộ'],
    ['big number', 'dân số 12.345 người', 'dân số mười hai nghìn ba trăm bốn mươi lăm người'],
    ['billions', 'tổng vốn 3,2 tỷ đồng', 'tổng vốn ba phẩy hai tỷ đồng'],
    ['dot decimal', 'khoảng 2.5 triệu', 'khoảng hai phẩy năm triệu'],
    ['NFC and spaces', 'Bão  số 5   đổ bộ', 'Bão số năm đổ bộ'],
    ['leaves plain words alone', 'Bà con chú ý!', 'Bà con chú ý!'],
  ];
  for (const [what, input, expected] of table) {
    it(`${what}: "${input}"`, () => expect(normalizeVietnamese(input)).toBe(expected));
  }

  it('decomposed input (NFD) comes out composed', () => {
    expect(normalizeVietnamese('Thông báo'.normalize('NFD'))).toBe('Thông báo');
  });

  it('a whole bulletin reads without a digit or known acronym left', () => {
    const out = normalizeVietnamese(
      'UBND xã thông báo: hồi 17h30 ngày 06/12/2026, bão số 5 cách bờ 120km, gió giật 100km/h. ' +
        'Lượng mưa 200-300mm. Bà con liên hệ BCH PCTT xã qua SĐT 0912 345 678 hoặc gọi 114 khi có cháy.',
    );
    expect(out).not.toMatch(/\d/);
    expect(out).not.toMatch(/UBND|PCTT|SĐT|BCH/);
    expect(out).toContain('mười bảy giờ ba mươi phút ngày sáu tháng mười hai năm hai nghìn không trăm hai mươi sáu');
  });
});
