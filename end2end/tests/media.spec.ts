import { test, expect, type Page } from '@playwright/test';
import { crc32, deflateSync } from 'zlib';
import { open, person } from './helpers';

const PASSWORD = 'correct horse battery staple';

test.describe.configure({ timeout: 90_000 });

/** A `width`×`height` PNG of one colour. */
function png(width: number, height: number, [r, g, b]: [number, number, number]): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([length, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const row = Buffer.concat([Buffer.from([0]), Buffer.from(Array(width).fill([r, g, b]).flat())]);
  const pixels = deflateSync(Buffer.concat(Array(height).fill(row)));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', pixels),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Picks `name` in the page's image picker and describes it once uploaded. */
async function attach(page: Page, name: string, colour: [number, number, number], alt: string) {
  await page.getByLabel('Add image').setInputFiles({ name, mimeType: 'image/png', buffer: png(600, 400, colour) });
  await page.getByLabel(`Description of ${name}`).fill(alt);
}

test('an image attached to a post and to a chat message reaches the other person', async ({ browser }) => {
  const a = await person(browser, 'media_a', PASSWORD);
  const b = await person(browser, 'media_b', PASSWORD);
  await open(b.page, `/u/${a.name}`);
  await b.page.getByRole('button', { name: `Follow @${a.name}` }).click();
  await expect(b.page.getByRole('button', { name: `Unfollow @${a.name}` })).toBeVisible();

  // A posts two described pictures with a line of text: one picked, one pasted.
  await open(a.page, '/');
  const text = a.page.getByLabel("What's on your mind?");
  await text.fill('the door I painted');
  await attach(a.page, 'door.png', [200, 30, 30], 'A red door');
  await text.evaluate((box, bytes) => {
    const clipboard = new DataTransfer();
    clipboard.items.add(new File([new Uint8Array(bytes)], 'tree.png', { type: 'image/png' }));
    box.dispatchEvent(new ClipboardEvent('paste', { clipboardData: clipboard, bubbles: true, cancelable: true }));
  }, [...png(200, 300, [20, 120, 20])]);
  await a.page.getByLabel('Description of tree.png').fill('A green tree');
  await a.page.getByRole('button', { name: 'Post' }).click();
  const own = a.page.getByRole('article', { name: /^Post by/ }).first();
  await expect(own.getByText('the door I painted')).toBeVisible();
  await expect(own.getByRole('img', { name: 'A red door' })).toBeVisible();
  await expect(own.getByRole('img', { name: 'A green tree' })).toBeVisible();
  await expect(a.page.getByLabel('Description of door.png')).toHaveCount(0);

  // B sees it in the feed, with its size set before it loads, and opens it full size.
  await open(b.page, '/');
  const picture = b.page.getByRole('img', { name: 'A red door' });
  await expect(picture).toBeVisible();
  await expect(picture).toHaveAttribute('width', '600');
  await expect(picture).toHaveAttribute('height', '400');
  await expect(picture).toHaveAttribute('loading', 'lazy');
  await expect(b.page.getByRole('img', { name: 'A green tree' })).toHaveAttribute('height', '300');
  await picture.click();
  const full = b.page.getByRole('dialog', { name: 'Full-size image' });
  await expect(full.getByRole('img', { name: 'A red door' })).toBeVisible();
  await full.getByRole('button', { name: 'Close' }).click();
  await expect(full).toHaveCount(0);
  // Escape closes it too.
  await picture.click();
  await expect(full).toBeVisible();
  await b.page.keyboard.press('Escape');
  await expect(full).toHaveCount(0);

  // In chat: A attaches one picture with the picker and drops another on the composer;
  // B receives over long-polling (A's page keeps its WebSocket).
  await open(a.page, `/u/${b.name}`);
  await a.page.getByRole('button', { name: 'Message' }).click();
  await expect(a.page).toHaveURL(/\/chat\/\d+$/);
  const conversation = new URL(a.page.url()).pathname;
  await open(b.page, `${conversation}?transport=longpoll`);
  await attach(a.page, 'sky.png', [30, 60, 220], 'A blue sky');
  const composer = a.page.getByRole('textbox', { name: 'Message' });
  const dropped = await a.page.evaluateHandle((bytes) => {
    const transfer = new DataTransfer();
    transfer.items.add(new File([new Uint8Array(bytes)], 'grass.png', { type: 'image/png' }));
    return transfer;
  }, [...png(300, 300, [30, 160, 40])]);
  await composer.dispatchEvent('drop', { dataTransfer: dropped });
  await a.page.getByLabel('Description of grass.png').fill('Green grass');
  await composer.fill('look at these');
  await composer.press('Enter');

  const seen = b.page.getByRole('list', { name: 'Messages' });
  await expect(seen.getByText('look at these')).toBeVisible();
  await expect(seen.getByRole('img', { name: 'A blue sky' })).toBeVisible();
  await expect(seen.getByRole('img', { name: 'Green grass' })).toBeVisible();
  await expect(a.page.getByRole('list', { name: 'Messages' }).getByRole('img', { name: 'A blue sky' })).toBeVisible();

  // Something that is not an image is refused with a message saying so.
  await a.page.getByLabel('Add image').setInputFiles({
    name: 'notes.png',
    mimeType: 'image/png',
    buffer: Buffer.from('these are not pixels'),
  });
  await expect(a.page.getByRole('alert')).toContainText('notes.png: not an image Kith accepts');
});
