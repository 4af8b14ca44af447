# Puts a LayerFit shortcut on the desktop that starts the app with pythonw (no console window).
$root = Resolve-Path "$PSScriptRoot\..\.."
$shell = New-Object -ComObject WScript.Shell
$lnk = $shell.CreateShortcut("$([Environment]::GetFolderPath('Desktop'))\LayerFit.lnk")
$lnk.TargetPath = "$root\.venv\Scripts\pythonw.exe"
$lnk.Arguments = "-m gui"
$lnk.WorkingDirectory = "$root"
$lnk.IconLocation = "$root\resources\layerfit.ico"
$lnk.Save()
Write-Host "LayerFit shortcut created on the desktop."
